//go:build linux

// Package uring sends many sockets' bytes in one system call through an
// io_uring: a loop's client writes, one write(2) each otherwise, go in as
// one batch of IORING_OP_SEND entries and one io_uring_enter.
//
// A Ring belongs to one goroutine (an event loop). Sends are MSG_DONTWAIT,
// as a write to the loop's non-blocking sockets is: each completes at once,
// in full, in part, or with -EAGAIN, never parked in the kernel.
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI (include/uapi/linux/io_uring.h).
const (
	opSend         = 26
	setupSubmitAll = 1 << 7
	enterGetEvents = 1 << 0
	featSingleMmap = 1 << 0
	offSQRing      = 0
	offCQRing      = 0x8000000
	offSQEs        = 0x10000000
	sqeSize        = 64
	cqeSize        = 16
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is a submission queue entry, as far as a send needs.
type sqe struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	msgFlags uint32
	userData uint64
	_        [24]byte
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring set up for sends.
type Ring struct {
	fd             int
	rings, sqeMem  []byte // mmaps (rings: SQ and CQ, one mapping)
	cqMem          []byte // the CQ ring's own mapping, without FEAT_SINGLE_MMAP
	sqHead, sqTail *uint32
	cqHead, cqTail *uint32
	sqMask, cqMask uint32
	sqes           []sqe
	cqes           []cqe
	queued         uint32   // entries since the last Submit
	bufs           [][]byte // what the queued entries point at, kept alive
	done           func(tag uint64, res int)
	enters         uint64 // io_uring_enter calls that submitted sends
}

// New sets up a ring of entries sends (a power of two, at most 32768).
// done runs in Submit for each send: res is the bytes sent, or -errno.
// It fails where io_uring is missing or refused (old kernel, seccomp,
// kernel.io_uring_disabled).
func New(entries uint32, done func(tag uint64, res int)) (*Ring, error) {
	var p params
	fd, err := setup(entries, &p, setupSubmitAll)
	if errors.Is(err, unix.EINVAL) { // before 5.18: no SUBMIT_ALL
		p = params{}
		fd, err = setup(entries, &p, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("io_uring_setup: %w", err)
	}
	r := &Ring{fd: fd, done: done}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func setup(entries uint32, p *params, flags uint32) (int, error) {
	p.flags = flags
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*cqeSize)
	single := p.features&featSingleMmap != 0
	size := sqSize
	if single {
		size = max(sqSize, cqSize)
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.rings, err = unix.Mmap(r.fd, offSQRing, size, prot, flags); err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	cq := r.rings
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring mmap: %w", err)
		}
		cq = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*sqeSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(r.rings, p.sqOff.head), u32(r.rings, p.sqOff.tail), *u32(r.rings, p.sqOff.ringMask)
	r.cqHead, r.cqTail, r.cqMask = u32(cq, p.cqOff.head), u32(cq, p.cqOff.tail), *u32(cq, p.cqOff.ringMask)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&cq[p.cqOff.cqes])), p.cqEntries)
	// The SQ array maps ring slots to entries: one to one, set once.
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.rings[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	return nil
}

// Send queues a send of b to socket fd, reported to done with tag; a full
// ring is submitted first. b must not change until Submit returns.
func (r *Ring) Send(fd int, b []byte, tag uint64) {
	if r.queued == uint32(len(r.sqes)) {
		r.Submit()
	}
	tail := atomic.LoadUint32(r.sqTail)
	e := &r.sqes[tail&r.sqMask]
	*e = sqe{opcode: opSend, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))),
		len: uint32(len(b)), msgFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, userData: tag}
	atomic.StoreUint32(r.sqTail, tail+1)
	r.bufs = append(r.bufs, b)
	r.queued++
}

// Submit sends what is queued, in one io_uring_enter, and runs done for
// each send. A failed enter (never seen but for a signal) reports every
// send still unreported as -errno.
func (r *Ring) Submit() {
	for n := r.queued; n > 0; {
		k, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), uintptr(n), enterGetEvents, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 { // take back the entries the kernel did not consume, report them
			head, tail := atomic.LoadUint32(r.sqHead), atomic.LoadUint32(r.sqTail)
			for i := head; i != tail; i++ {
				r.done(r.sqes[i&r.sqMask].userData, -int(errno))
			}
			atomic.StoreUint32(r.sqTail, head)
			break
		}
		r.enters++
		n -= uint32(k)
		r.reap()
	}
	r.reap()
	r.queued = 0
	clear(r.bufs)
	r.bufs = r.bufs[:0]
}

// reap runs done for each completion and frees its slot.
func (r *Ring) reap() {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		r.done(c.userData, int(c.res))
	}
	atomic.StoreUint32(r.cqHead, head)
}

// Enters is the io_uring_enter calls that submitted sends so far (Submit's,
// and Send's when the ring was full).
func (r *Ring) Enters() uint64 { return r.enters }

// Close frees the ring.
func (r *Ring) Close() error {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.rings} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.rings = nil, nil, nil
	return unix.Close(r.fd)
}
