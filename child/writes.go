package child

import (
	"fmt"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/child/session"
	"tickrelay/internal/uring"
)

// Client write paths (Config.Writes): how a loop's flush hands its
// clients' frames to the kernel.
const (
	// WritesSyscall: a write(2) per client (gnet's Write).
	WritesSyscall = "syscall"
	// WritesUring: one io_uring submission of every client's send per
	// flush; refused (an error at start) where io_uring is not available.
	WritesUring = "uring"
	// WritesAuto: io_uring where the kernel allows it, else syscall.
	WritesAuto = "auto"
)

// ringEntries is the sends one submission carries at most: a flush to
// more clients submits every ringEntries.
const ringEntries = 1024

// writePath resolves Config.Writes against what this kernel allows, once,
// at start: the path the loops take, and why where auto fell back.
func writePath(want string) (path string, why error, err error) {
	if want == WritesSyscall {
		return WritesSyscall, nil, nil
	}
	r, probe := uring.New(8, func(uint64, int) {})
	if probe == nil {
		r.Close()
		return WritesUring, nil, nil
	}
	if want == WritesUring {
		return "", nil, fmt.Errorf("child: -writes uring: %w", probe)
	}
	return WritesSyscall, probe, nil
}

// ringBatch is a loop's session.Batcher over its own io_uring.
type ringBatch struct {
	ring     *uring.Ring
	conns    []gnet.Conn
	bufs     [][]byte
	m        *Metrics
	reported uint64 // the ring's enters counted in m so far
}

func newRingBatch(m *Metrics) (*ringBatch, error) {
	b := &ringBatch{m: m}
	r, err := uring.New(ringEntries, b.done)
	if err != nil {
		return nil, err
	}
	b.ring = r
	return b, nil
}

// Add takes c's bytes unless its connection holds unsent bytes (they go
// first, through gnet).
func (b *ringBatch) Add(c session.Conn, p []byte) bool {
	g, ok := c.(gnetConn)
	if !ok || g.c.OutboundBuffered() > 0 {
		return false
	}
	b.ring.Send(g.c.Fd(), p, uint64(len(b.conns)))
	b.conns, b.bufs = append(b.conns, g.c), append(b.bufs, p)
	return true
}

func (b *ringBatch) Submit() {
	b.ring.Submit()
	// Every enter since the last report, Add's on a full ring included.
	n := b.ring.Enters()
	b.m.WriteSubmits.Add(float64(n - b.reported))
	b.reported = n
	clear(b.conns)
	clear(b.bufs)
	b.conns, b.bufs = b.conns[:0], b.bufs[:0]
}

// done hands what a socket did not take to gnet, as its Write does with the
// rest of a short write(2): it is buffered and sent when the socket is
// writable, or, on an error (a reset peer), the connection is closed.
func (b *ringBatch) done(tag uint64, res int) {
	c, p := b.conns[tag], b.bufs[tag]
	if res >= len(p) {
		return
	}
	if res > 0 {
		p = p[res:]
	}
	c.Write(p)
}

func (b *ringBatch) close() error {
	if b == nil || b.ring == nil {
		return nil
	}
	return b.ring.Close()
}
