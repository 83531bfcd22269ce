package child

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"tickrelay/child/frames"
	"tickrelay/child/session"
	"tickrelay/internal/gnetaddr"
	"tickrelay/latency"
	"tickrelay/wire"
)

// The client side of the child on gnet: the callbacks, the loops' queues of
// parsed batches, and the hand-off to each loop's session core
// (child/session), which holds the clients and runs their commands.

// loop is one gnet event loop: an ordered queue of parsed batches filled by
// the relay lines, and the loop's session core. The relay signals the loop
// with one Execute per burst (signalled); the loop drains the whole queue in
// order, so Execute's own ordering never matters.
//
// The queue is bounded (room): a loop that falls behind makes the relay
// lines wait, so they stop reading the roots and the backlog stays in
// the roots' rings and journals (TCP backpressure) instead of growing here as
// parsed batches, which would also outrun the batch free list.
type loop struct {
	s   *server
	el  gnet.EventLoop
	idx int // registration order: the loop's hops shard is idx+1

	room      chan struct{} // a token per queued batch
	flushed   atomic.Uint64 // last seq of the last batch written out
	mu        sync.Mutex
	q, spare  []*frames.Batch
	signalled bool

	sess    *session.Loop // loop-only from here on
	tickRun gnet.Runnable
	ring    *ringBatch // its client writes, with -writes uring
}

// closeRings frees the loops' io_urings once the engine has stopped.
func (s *server) closeRings() {
	for _, l := range *s.loops.Load() {
		l.ring.close()
	}
}

// peer is a gnet connection's context: its client and its loop.
type peer struct {
	cl *session.Client
	l  *loop
	ip string // admission counts it by its address
}

// ipOf is the address part of a client's remote address.
func ipOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return string(t.IP.To16())
	}
	if a == nil {
		return ""
	}
	return a.String()
}

// gnetConn is a gnet connection as the session core sees it.
type gnetConn struct{ c gnet.Conn }

func (g gnetConn) Write(b []byte) { g.c.Write(b) }
func (g gnetConn) Buffered() int  { return g.c.OutboundBuffered() }
func (g gnetConn) Queued() int {
	n, err := unix.IoctlGetInt(g.c.Fd(), unix.SIOCOUTQ)
	if err != nil {
		return 0 // a closing socket: nothing it holds matters
	}
	return n
}
func (g gnetConn) Close()             { g.c.EventLoop().Close(g.c) }
func (g gnetConn) RemoteAddr() string { return g.c.RemoteAddr().String() }

// Run drains the loop's queue; it runs on the loop (gnet.Runnable).
func (l *loop) Run(context.Context) error {
	l.drain()
	return nil
}

// maxQueued bounds a loop's queue of batches (each about BatchBytes of
// frames at most): ~4 MiB, some 25k frames, so a loop that fell behind
// catches up in drains of many frames per client write; well within the
// batch free list.
const maxQueued = 64

func (l *loop) enqueue(b *frames.Batch) {
	select {
	case l.room <- struct{}{}:
	case <-l.s.stopped:
		b.Release()
		return
	}
	l.mu.Lock()
	l.q = append(l.q, b)
	signal := !l.signalled
	l.signalled = true
	l.mu.Unlock()
	if signal {
		if err := l.el.Execute(context.Background(), l); err != nil {
			// Engine shutting down: nothing will drain; drop the queue.
			l.mu.Lock()
			q := l.q
			l.q, l.signalled = nil, false
			l.mu.Unlock()
			for _, b := range q {
				b.Release()
				<-l.room
			}
		}
	}
}

func (l *loop) drain() {
	l.mu.Lock()
	q := l.q
	l.q, l.spare = l.spare[:0], nil
	l.signalled = false
	l.mu.Unlock()
	if len(q) == 0 {
		l.mu.Lock()
		l.spare = q
		l.mu.Unlock()
		return
	}
	// Flush every drainChunk frames (or maxDeliveries deliveries): a backlog
	// drained in one go would hold the first frames until the last were
	// appended and grow the arena to the whole backlog.
	last := q[len(q)-1].Last
	now := time.Now().UnixNano()
	n := 0
	for i, b := range q {
		if n >= drainChunk || l.sess.Deliveries() >= maxDeliveries {
			l.sess.Flush()
			now, n = time.Now().UnixNano(), 0
		}
		l.sess.Add(b, now)
		n += b.Len()
		l.s.ch.hops.RecordHopN(l.idx+1, latency.HopChild, now-b.ChildRecv, int64(b.Len()))
		b.Release()
		q[i] = nil
		<-l.room
	}
	l.sess.Flush()
	l.sess.Resync()
	l.flushed.Store(last)
	l.mu.Lock()
	if l.spare == nil {
		l.spare = q[:0]
	}
	l.mu.Unlock()
}

// drainChunk is how many frames a drain appends before it writes them out.
// Large enough that a busy client gets many frames per write, small enough
// that the loop's arena stays bounded.
const drainChunk = 65536

// maxDeliveries is how many deliveries (frame to client) a drain hands out
// before it writes them out: it bounds the delivery list when many clients
// take "*" (each frame then goes to all of them).
const maxDeliveries = 1 << 20

// tickBusy is how often the engine's ticker has a loop with clients behind,
// stale or cut run Tick when no drain does (a client that drained its
// socket catches up within it); tickIdle is its period when none has.
const (
	tickBusy = 10 * time.Millisecond
	tickIdle = 100 * time.Millisecond
)

// OnTick runs on gnet's ticker goroutine: it hands Tick to each loop that
// needs it.
func (s *server) OnTick() (time.Duration, gnet.Action) {
	next := tickIdle
	for _, l := range *s.loops.Load() {
		if l.sess.NeedsTick() {
			l.el.Execute(context.Background(), l.tickRun) // fails only when the engine stops
			next = tickBusy
		}
	}
	return next, gnet.None
}

// server is the gnet event handler for clients.
type server struct {
	gnet.BuiltinEventEngine
	ch    *Child
	eng   gnet.Engine
	addr  net.Addr
	boot  chan struct{}
	loops atomic.Pointer[[]*loop] // copy on write
	mu    sync.Mutex              // guards byEL and writes of loops
	byEL  map[gnet.EventLoop]*loop
	// closing turns new connections away during shutdown, so clients
	// reconnecting in a loop cannot keep the engine from stopping.
	closing atomic.Bool
	stopped chan struct{} // closed when the engine has stopped
}

func newServer(ch *Child) *server {
	s := &server{ch: ch, boot: make(chan struct{}), stopped: make(chan struct{}), byEL: make(map[gnet.EventLoop]*loop)}
	s.loops.Store(&[]*loop{})
	return s
}

func (s *server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	addr, err := gnetaddr.Bound(eng)
	if err != nil {
		s.ch.log.Error("cannot learn the bound client address", "err", err)
		return gnet.Shutdown
	}
	s.addr = addr
	close(s.boot)
	return gnet.None
}

// loopOf returns (registering on first use) the loop state of el.
func (s *server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byEL[el]; l != nil {
		return l
	}
	old := *s.loops.Load()
	l := &loop{s: s, el: el, idx: len(old), room: make(chan struct{}, maxQueued)}
	cfg := s.ch.sessionConfig()
	cfg.Overloaded = func() bool { return s.ch.overloaded(l) }
	cfg.Submit, cfg.Origin = s.ch.SubmitControl, s.ch.cfg.Name+"/"+strconv.Itoa(l.idx)
	cfg.Alerts, cfg.MaxAlerts = s.ch.readAlerts, s.ch.cfg.MaxAlerts
	if s.ch.writes == WritesUring {
		b, err := newRingBatch(s.ch.metrics)
		if err != nil { // the probe's ring was allowed: a limit, not the kernel
			s.ch.log.Warn("client writes: this loop uses write(2), its io_uring failed", "loop", l.idx, "err", err)
		} else {
			l.ring, cfg.Batch = b, b
		}
	}
	l.sess = session.NewLoop(cfg, s.ch.state, s.ch.metrics.session())
	// The loop's group replica starts as the child's, and it gets every
	// marker after: the relay publishes under relayMu.
	s.ch.relayMu.Lock()
	defer s.ch.relayMu.Unlock()
	l.sess.LoadGroups(s.ch.groups.Clone())
	l.tickRun = gnet.RunnableFunc(func(context.Context) error { l.sess.Tick(); return nil })
	l.flushed.Store(s.ch.LastSeq()) // earlier batches were never this loop's
	s.byEL[el] = l
	next := append(append(make([]*loop, 0, len(old)+1), old...), l)
	s.loops.Store(&next)
	return l
}

// publish hands a parsed batch to every loop, in order (a batch without
// frames too: it still moves the loops' FlushedSeq on).
func (s *server) publish(b *frames.Batch) {
	loops := *s.loops.Load()
	if len(loops) == 0 {
		b.Share(1)
		b.Release()
		return
	}
	b.Share(len(loops))
	for _, l := range loops {
		l.enqueue(b)
	}
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if s.closing.Load() {
		return wire.AppendErr(nil, wire.ErrCodeShutdown, "child is shutting down"), gnet.Close
	}
	ip := ipOf(c.RemoteAddr())
	reason, retry := refusedDraining, time.Second
	if !s.ch.draining.Load() {
		reason, retry = s.ch.admit.admit(ip, time.Now().UnixNano())
	}
	if reason != "" {
		s.ch.metrics.Refused.WithLabelValues(reason).Inc()
		s.ch.metrics.ClientErrors.WithLabelValues(wire.ErrCodeBusy).Inc()
		return s.ch.busyLine(retry), gnet.Close
	}
	l := s.loopOf(c.EventLoop())
	c.SetContext(&peer{cl: l.sess.Open(gnetConn{c}), l: l, ip: ip})
	s.ch.metrics.Clients.Inc()
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, err error) gnet.Action {
	p, ok := c.Context().(*peer)
	if !ok || !p.cl.Open() {
		return gnet.None
	}
	p.l.sess.Closed(p.cl)
	s.ch.admit.release(p.ip)
	s.ch.metrics.Clients.Dec()
	return gnet.None
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	p := c.Context().(*peer)
	data, _ := c.Next(-1)
	if p.l.sess.Input(p.cl, data) {
		return gnet.Close
	}
	return gnet.None
}

// shutdown runs on each loop at the end: flush what is queued, tell every
// client, and close them.
func (l *loop) shutdown() {
	l.drain()
	l.sess.Shutdown()
}
