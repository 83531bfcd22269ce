//go:build linux

package uring

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// pair returns a connected TCP pair on 127.0.0.1: the sending side's fd
// (non-blocking, as an event loop's) and the receiving conn.
func pair(t testing.TB) (int, *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	raw, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd, c.(*net.TCPConn)
}

func newRing(t testing.TB, done func(uint64, int)) *Ring {
	r, err := New(64, done)
	if err != nil {
		t.Skip("io_uring unavailable:", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestSend(t *testing.T) {
	res := map[uint64]int{}
	r := newRing(t, func(tag uint64, n int) { res[tag] = n })
	const conns = 100 // more than the ring holds: it submits when full
	fds := make([]int, conns)
	peers := make([]*net.TCPConn, conns)
	for i := range fds {
		fds[i], peers[i] = pair(t)
	}
	msg := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 100+i) }
	for i, fd := range fds {
		r.Send(fd, msg(i), uint64(i))
	}
	r.Submit()
	for i, p := range peers {
		if res[uint64(i)] != len(msg(i)) {
			t.Fatalf("send %d: res %d, want %d", i, res[uint64(i)], len(msg(i)))
		}
		got := make([]byte, len(msg(i)))
		if _, err := io.ReadFull(p, got); err != nil || !bytes.Equal(got, msg(i)) {
			t.Fatalf("conn %d got %q (%v)", i, got, err)
		}
	}
	if e := r.Enters(); e < 2 || len(res) != conns {
		t.Fatalf("%d enters, %d sends reported", e, len(res))
	}
}

// TestSendFull: a socket that takes nothing more gets a short send, then
// -EAGAIN, never a wait; a closed one gets an error, not a signal.
func TestSendFull(t *testing.T) {
	var last int
	r := newRing(t, func(_ uint64, n int) { last = n })
	fd, peer := pair(t)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	big := make([]byte, 8<<20)
	r.Send(fd, big, 1)
	r.Submit()
	if last <= 0 || last >= len(big) {
		t.Fatalf("first send into a small buffer: %d", last)
	}
	for i := 0; i < 1000 && last > 0; i++ { // what the receive window still takes
		r.Send(fd, big, 2)
		r.Submit()
	}
	if last != -int(syscall.EAGAIN) {
		t.Fatalf("send to a full socket: %d, want -EAGAIN", last)
	}
	peer.SetLinger(0)
	peer.Close()
	for i := range 100 {
		r.Send(fd, big[:10], uint64(3+i))
		r.Submit()
		if last < 0 && last != -int(syscall.EAGAIN) {
			return
		}
	}
	t.Fatalf("send to a reset peer: %d", last)
}

// The experiment behind the child's -writes: sockets taking one 100-byte
// frame each, as a flush writes them: a write(2) per socket against one
// io_uring_enter per 256 sends. ns/op is one socket write, sender side
// (on loopback that includes the receiver's TCP input, run in the
// sender's call). Nothing reads: the frames queue in the peers' receive
// buffers, so keep -benchtime within them (1024 sockets x 64 KiB: 600000x).
func BenchmarkWrite(b *testing.B) {
	const n, batch = 1024, 256
	fds := make([]int, n)
	for i := range fds {
		fds[i], _ = pair(b)
	}
	frame := bytes.Repeat([]byte("x"), 100)
	b.Run("syscall", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := unix.Write(fds[i%n], frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uring", func(b *testing.B) {
		var failed int
		r := newRing(b, func(_ uint64, res int) {
			if res != len(frame) {
				failed = res
			}
		})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r.Send(fds[i%n], frame, 0)
			if i%batch == batch-1 {
				r.Submit()
			}
		}
		r.Submit()
		if failed != 0 {
			b.Fatal("send:", failed)
		}
	})
}
