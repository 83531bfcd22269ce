//go:build linux

package harness

import (
	"fmt"
	"sync"
	"syscall"

	"tickrelay/wire"
)

// maxUnit bounds one protocol unit a connection may leave incomplete
// between reads in ModeEpoll: a text frame plus a NATS/RESP header.
const maxUnit = wire.MaxTextFrame + 256

// poller runs ModeEpoll: workers, each with an epoll set and a read buffer.
type poller struct {
	h       *Harness
	workers []*worker
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

type worker struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]*epConn
}

// epConn is a connection's state between reads.
type epConn struct {
	c    *conn
	tail []byte // incomplete unit, at most maxUnit
}

func newPoller(h *Harness, n int) (*poller, error) {
	p := &poller{h: h, done: make(chan struct{})}
	for i := 0; i < max(n, 1); i++ {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.closeFDs()
			return nil, fmt.Errorf("harness: epoll: %w", err)
		}
		p.workers = append(p.workers, &worker{epfd: fd, conns: map[int32]*epConn{}})
	}
	for _, w := range p.workers {
		p.wg.Add(1)
		go p.run(w)
	}
	return p, nil
}

// add registers c with worker i%n. The socket stays owned by its net.Conn
// (already non-blocking); the worker reads it with read(2) directly.
func (p *poller) add(c *conn, i int) error {
	rc, err := c.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	if err := rc.Control(func(fd uintptr) { c.fd = int(fd) }); err != nil {
		return err
	}
	w := p.workers[i%len(p.workers)]
	w.mu.Lock()
	w.conns[int32(c.fd)] = &epConn{c: c, tail: make([]byte, 0, maxUnit)}
	w.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	return syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev)
}

func (p *poller) run(w *worker) {
	defer p.wg.Done()
	h := p.h
	buf := make([]byte, h.cfg.ReadBuffer+maxUnit)
	stamps := make([]wire.Stamps, 0, len(buf)/128)
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-p.done:
			return
		default:
		}
		n, err := syscall.EpollWait(w.epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			return
		}
		for k := 0; k < n; k++ {
			fd := events[k].Fd
			w.mu.Lock()
			ec := w.conns[fd]
			w.mu.Unlock()
			if ec == nil {
				continue
			}
			have := copy(buf, ec.tail)
			m, rerr := syscall.Read(int(fd), buf[have:])
			if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
				continue
			}
			if m <= 0 {
				p.drop(w, fd, ec)
				continue
			}
			var perr error
			have, stamps, perr = h.consume(ec.c, buf, have+m, m, stamps, h.now())
			if perr != nil || have > maxUnit {
				p.drop(w, fd, ec)
				continue
			}
			ec.tail = append(ec.tail[:0], buf[:have]...)
		}
	}
}

// drop forgets a connection that ended or broke.
func (p *poller) drop(w *worker, fd int32, ec *epConn) {
	syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	w.mu.Lock()
	delete(w.conns, fd)
	w.mu.Unlock()
	ec.c.c.Close()
	p.h.lost()
}

// stop ends the workers and closes the epoll sets. Idempotent.
func (p *poller) stop() {
	p.once.Do(func() {
		close(p.done)
		p.wg.Wait()
		p.closeFDs()
	})
}

func (p *poller) closeFDs() {
	for _, w := range p.workers {
		syscall.Close(w.epfd)
	}
}
