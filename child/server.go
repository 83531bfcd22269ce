package child

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/latency"
	"tickrelay/wire"
)

// client is one client connection; it lives on its conn's event loop and
// is touched only there.
type client struct {
	conn  gnet.Conn
	loop  *loop
	subs  map[uint64][]byte // symbol hash -> canonical symbol, subscribed
	all   bool              // subscribed to "*"
	first int32             // its first and last delivery in loop.f.sent, index+1 (0: none)
	last  int32
	out   []byte // command replies of the current OnTraffic
	in    []byte // partial command line
	tick  uint64
	dead  bool // closed or closing: send nothing more
	// stale: behind by over MaxPending under SlowPolicy conflate, since
	// staleAt: it gets no frames until resync catches it up with images.
	stale   bool
	staleAt int64
	// grace: the size of the largest reply (a SUB's image) still draining;
	// unsent bytes may pass MaxPending by that much: an image the client
	// asked for does not make it slow. 0 once below MaxPending.
	grace  int
	syms   [][]byte
	sym    []byte
	hashes []uint64
	winAt  int64 // flood window start
	winN   int
}

// loop is one gnet event loop's share of the fan-out: an ordered queue of
// parsed batches filled by the relay lines, and the fanout index. The
// relay signals the loop with one Execute per burst (signalled); the loop
// drains the whole queue in order, so Execute's own ordering never matters.
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
	q, spare  []*Batch
	signalled bool

	f       *fanout // loop-only from here on
	clients map[*client]struct{}
	stale   []*client // conflated clients waiting for resync
	// hasStale mirrors len(stale) > 0 for the engine's ticker, which then
	// runs resyncRun on the loop: a stale client must catch up (or time
	// out) on a quiet feed too, not only after a drain.
	hasStale  atomic.Bool
	resyncRun gnet.Runnable
	seen      map[uint64]struct{} // scratch: the symbols of one command line
}

// Run drains the loop's queue; it runs on the loop (gnet.Runnable).
func (l *loop) Run(context.Context) error {
	l.drain()
	return nil
}

// maxQueued bounds a loop's queue of batches (each about batchBytes of
// frames at most): ~4 MiB, some 25k frames, so a loop that fell behind
// catches up in drains of many frames per client write; well within the
// batch free list.
const maxQueued = 64

func (l *loop) enqueue(b *Batch) {
	select {
	case l.room <- struct{}{}:
	case <-l.s.stopped:
		b.release()
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
				b.release()
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
	last := q[len(q)-1].last
	now := time.Now().UnixNano()
	frames := 0
	for i, b := range q {
		if frames >= drainChunk || len(l.f.sent) >= maxDeliveries {
			l.flush()
			now, frames = time.Now().UnixNano(), 0
		}
		l.f.add(b, now)
		frames += len(b.frames)
		l.s.ch.hops.RecordHopN(l.idx+1, latency.HopChild, now-b.childRecv, int64(len(b.frames)))
		b.release()
		q[i] = nil
		<-l.room
	}
	l.flush()
	l.resync()
	l.flushed.Store(last)
	l.mu.Lock()
	if l.spare == nil {
		l.spare = q[:0]
	}
	l.mu.Unlock()
}

// drainChunk is how many frames a drain appends before it writes them out.
// Large enough that a busy client gets many frames per write, small enough
// that the arena stays within maxKeptArena.
const drainChunk = 65536

// maxDeliveries is how many deliveries (frame to client) a drain hands out
// before it writes them out: it bounds the delivery list when many clients
// take "*" (each frame then goes to all of them).
const maxDeliveries = 1 << 20

// flush writes each dirty client's frames with one Write and disconnects
// clients whose unsent bytes pass MaxPending.
func (l *loop) flush() {
	m := l.s.ch.metrics
	var bytes, writes int
	for _, cl := range l.f.dirty {
		out := l.f.take(cl)
		if !cl.dead {
			bytes += len(out)
			cl.conn.Write(out) // copies what the socket does not take
			writes++
		}
		if l.tooSlow(cl) {
			l.s.closeNow(cl)
		}
	}
	l.f.flushed()
	m.BytesOut.Add(float64(bytes))
	m.Writes.Add(float64(writes))
	m.FramesOut.Add(float64(l.f.frames))
	l.f.frames = 0
}

// tooSlow applies the slow-client policy once cl's outbound buffer passed
// MaxPending (plus its grace). Disconnect: it writes ERR SLOW (best
// effort: unsent bytes are discarded on close), marks cl dead and reports
// true; the caller closes it. Conflate: cl goes stale (no frames until
// resync).
func (l *loop) tooSlow(cl *client) bool {
	if cl.dead || cl.conn == nil || cl.stale {
		return false
	}
	n := cl.conn.OutboundBuffered()
	cfg := &l.s.ch.cfg
	if n <= cfg.MaxPending {
		cl.grace = 0
		return false
	}
	if n <= cfg.MaxPending+cl.grace {
		return false
	}
	if cfg.SlowPolicy == SlowConflate {
		cl.stale, cl.staleAt = true, time.Now().UnixNano()
		l.stale = append(l.stale, cl)
		l.hasStale.Store(true)
		l.s.ch.metrics.SlowConflated.Inc()
		l.s.ch.log.Info("slow client conflated", "remote", cl.conn.RemoteAddr().String(), "pending", n)
		return false
	}
	l.dropSlow(cl, "unsent bytes "+strconv.Itoa(n)+" over limit "+strconv.Itoa(cfg.MaxPending))
	return true
}

// dropSlow writes ERR SLOW with reason to cl and marks it dead.
func (l *loop) dropSlow(cl *client, reason string) {
	l.s.ch.metrics.SlowDisconnect.Inc()
	l.s.ch.log.Warn("disconnecting slow client", "remote", cl.conn.RemoteAddr().String(), "reason", reason)
	l.s.writeErr(cl, wire.ErrCodeSlow, reason)
}

// resync runs after each drain's flush under SlowPolicy conflate, and every
// resyncEvery while the loop has stale clients (OnTick). A stale
// client whose backlog has gone down to MaxPending/4 gets ERR CONFLATED,
// then the images and OKs of its subscriptions (as for a SUB), then every
// update after P: the updates it missed are conflated into the images. One
// still behind after SlowTimeout is disconnected.
func (l *loop) resync() {
	if len(l.stale) == 0 {
		return
	}
	ch := l.s.ch
	now := time.Now().UnixNano()
	stale := l.stale
	l.stale = nil // a resync's own write may make its client stale again
	keep := stale[:0]
	for _, cl := range stale {
		switch {
		case cl.dead || cl.conn == nil:
		case cl.conn.OutboundBuffered() <= ch.cfg.MaxPending/4:
			cl.stale = false
			ch.metrics.ClientErrors.WithLabelValues(wire.ErrCodeConflated).Inc()
			cl.out = wire.AppendErr(cl.out[:0], wire.ErrCodeConflated, "updates skipped while behind; the images and OK SUB of your subscriptions follow")
			var p uint64
			if cl.all { // every image, once: the symbols' own OKs follow it
				cl.out, p = ch.appendAllImagesRLocked(cl.out, now)
				l.s.subscribeAt(cl, 0, []byte(wire.AllSymbols), true, false, p, now)
			} else {
				ch.mu.RLock()
				p = ch.core.LastSeq()
			}
			for h, sym := range cl.subs {
				l.s.subscribeAt(cl, h, sym, false, !cl.all, p, now)
			}
			ch.mu.RUnlock()
			ch.metrics.SlowResynced.Inc()
			l.s.writeOut(cl)
			if cl.dead {
				l.s.closeNow(cl)
			}
		case now-cl.staleAt > int64(ch.cfg.SlowTimeout):
			l.dropSlow(cl, "behind for over "+ch.cfg.SlowTimeout.String())
			l.s.closeNow(cl)
		default:
			keep = append(keep, cl)
		}
	}
	clear(stale[len(keep):])
	l.stale = append(keep, l.stale...)
	l.hasStale.Store(len(l.stale) > 0)
}

// resyncEvery is how often the engine's ticker has a loop with stale
// clients run resync when no drain does.
const resyncEvery = 100 * time.Millisecond

// OnTick runs on gnet's ticker goroutine: it hands resync to each loop
// holding stale clients.
func (s *server) OnTick() (time.Duration, gnet.Action) {
	for _, l := range *s.loops.Load() {
		if l.hasStale.Load() {
			l.el.Execute(context.Background(), l.resyncRun) // fails only when the engine stops
		}
	}
	return resyncEvery, gnet.None
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
	addr, err := boundAddr(eng)
	if err != nil {
		s.ch.log.Error("cannot learn the bound client address", "err", err)
		return gnet.Shutdown
	}
	s.addr = addr
	close(s.boot)
	return gnet.None
}

// boundAddr learns the listener's address (the port when bound to :0) from
// a dup of its fd: gnet keeps the resolved address to itself.
func boundAddr(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "gnet-listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	a := ln.Addr().(*net.TCPAddr)
	return &net.TCPAddr{IP: append(net.IP(nil), a.IP...), Port: a.Port, Zone: a.Zone}, nil
}

// loopOf returns (registering on first use) the loop state of el.
func (s *server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.byEL[el]; l != nil {
		return l
	}
	old := *s.loops.Load()
	l := &loop{s: s, el: el, idx: len(old), f: newFanout(), clients: make(map[*client]struct{}),
		room: make(chan struct{}, maxQueued)}
	l.resyncRun = gnet.RunnableFunc(func(context.Context) error { l.resync(); return nil })
	l.flushed.Store(s.ch.LastSeq()) // earlier batches were never this loop's
	s.byEL[el] = l
	next := append(append(make([]*loop, 0, len(old)+1), old...), l)
	s.loops.Store(&next)
	return l
}

// publish hands a parsed batch to every loop, in order (a batch without
// frames too: it still moves the loops' FlushedSeq on).
func (s *server) publish(b *Batch) {
	loops := *s.loops.Load()
	if len(loops) == 0 {
		b.refs.Store(1)
		b.release()
		return
	}
	b.refs.Store(int32(len(loops)))
	for _, l := range loops {
		l.enqueue(b)
	}
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if s.closing.Load() {
		return wire.AppendErr(nil, wire.ErrCodeShutdown, "child is shutting down"), gnet.Close
	}
	l := s.loopOf(c.EventLoop())
	cl := &client{conn: c, loop: l}
	c.SetContext(cl)
	l.clients[cl] = struct{}{}
	s.ch.metrics.Clients.Inc()
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, err error) gnet.Action {
	cl, ok := c.Context().(*client)
	if !ok || cl.conn == nil {
		return gnet.None
	}
	cl.dead = true
	cl.loop.f.remove(cl)
	delete(cl.loop.clients, cl)
	cl.conn = nil
	s.ch.metrics.Clients.Dec()
	return gnet.None
}

// writeErr writes an ERR line best-effort and marks cl dead; the caller
// closes it (closeNow outside OnTraffic, gnet.Close from it).
func (s *server) writeErr(cl *client, code, reason string) {
	if cl.conn == nil {
		return
	}
	s.ch.metrics.ClientErrors.WithLabelValues(code).Inc()
	cl.dead = true
	cl.conn.Write(wire.AppendErr(nil, code, reason))
}

// closeNow closes cl on its loop, outside OnTraffic.
func (s *server) closeNow(cl *client) {
	if c := cl.conn; c != nil { // nil: a write error already closed it
		cl.dead = true
		cl.loop.el.Close(c)
	}
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	cl := c.Context().(*client)
	data, _ := c.Next(-1)
	if cl.dead {
		return gnet.None
	}
	recv := time.Now().UnixNano()
	buf := data
	if len(cl.in) > 0 {
		cl.in = append(cl.in, data...)
		buf = cl.in
	}
	cl.out = cl.out[:0]
	replied := 0 // bytes of the big replies written for this read's lines
	for len(buf) > 0 && !cl.dead {
		line, n, err := wire.NextLine(buf)
		if errors.Is(err, wire.ErrShort) {
			break
		}
		if err != nil {
			s.writeOut(cl)
			s.writeErr(cl, wire.ErrCodeTooLong, fmt.Sprintf("line over %d bytes", wire.MaxLineLen))
			return s.closeAction(cl)
		}
		buf = buf[n:]
		if recv-cl.winAt >= int64(time.Second) {
			cl.winAt, cl.winN = recv, 0
		}
		if cl.winN++; cl.winN > s.ch.cfg.MaxCommandsPerSec {
			s.writeOut(cl)
			s.writeErr(cl, wire.ErrCodeFlood, fmt.Sprintf("over %d commands/s", s.ch.cfg.MaxCommandsPerSec))
			return s.closeAction(cl)
		}
		s.command(cl, line, recv)
		if len(cl.out) >= replyFlushAt {
			// A big answer (an image, a history) goes out, and is counted
			// against MaxPending, before the next line's. The replies to
			// one read share a grace (a client sends its requests, then
			// reads them all) of at most maxReadGrace, or of the largest
			// reply: pipelined SUB * or RESUME lines could otherwise pile
			// up gigabytes here.
			replied += len(cl.out)
			cl.grace = max(cl.grace, min(replied, max(len(cl.out), maxReadGrace)))
			s.writeOut(cl)
		}
	}
	if cl.dead {
		return s.closeAction(cl)
	}
	cl.in = append(cl.in[:0], buf...)
	s.writeOut(cl)
	return s.closeAction(cl)
}

// replyFlushAt is the size of pending replies at which OnTraffic writes
// them out before running the client's next line.
const replyFlushAt = 64 << 10

// maxReadGrace bounds the grace the replies to one read of a client's lines
// share (each reply gets at least its own size).
const maxReadGrace = 64 << 20

// closeAction is gnet.Close for a live conn marked dead (nil conn: already closed).
func (s *server) closeAction(cl *client) gnet.Action {
	if cl.dead && cl.conn != nil {
		return gnet.Close
	}
	return gnet.None
}

func (s *server) writeOut(cl *client) {
	if len(cl.out) == 0 || cl.dead {
		return
	}
	cl.grace = max(cl.grace, len(cl.out))
	s.ch.metrics.BytesOut.Add(float64(len(cl.out)))
	cl.conn.Write(cl.out)
	if cap(cl.out) > 1<<20 {
		cl.out = nil
	} else {
		cl.out = cl.out[:0]
	}
	if cl.conn == nil { // write error closed it
		return
	}
	cl.loop.tooSlow(cl)
}

func (s *server) replyErr(cl *client, code, reason string) {
	s.ch.metrics.ClientErrors.WithLabelValues(code).Inc()
	cl.out = wire.AppendErr(cl.out, code, reason)
}

// command runs one client line on the client's loop. Subscription changes
// happen here, between drains, so they are ordered with the loop's frame
// queue; the image or history snapshot is taken under the core's read lock
// together with its LastSeq P, and the subscription delivers only seq > P:
// queued frames the snapshot already covers are skipped, later ones flow.
func (s *server) command(cl *client, line []byte, recv int64) {
	if len(line) == 0 {
		return
	}
	cmd, err := wire.ParseCommand(line, cl.syms[:0])
	if err != nil {
		if errors.Is(err, wire.ErrUnknownType) {
			s.replyErr(cl, wire.ErrCodeBadCommand, err.Error())
		} else {
			s.replyErr(cl, wire.ErrCodeBadArg, err.Error())
		}
		return
	}
	cl.syms = cmd.Symbols[:0]
	cmd.Symbols = cl.distinct(cmd.Symbols)
	f := cl.loop.f
	ch := s.ch
	switch cmd.Verb {
	case wire.CmdPing:
		cl.out = append(cl.out, "PONG\n"...)
	case wire.CmdTime:
		cl.out = wire.AppendTimeLine(cl.out, cmd.T0, recv, time.Now().UnixNano())
	case wire.CmdUnsub:
		for i, sym := range cmd.Symbols {
			all := string(sym) == wire.AllSymbols
			cl.sym = CanonicalSymbol(cl.sym[:0], sym)
			f.unsubscribe(cl, cl.hashes[i], all)
			cl.out = wire.AppendOK(cl.out, wire.CmdUnsub, cl.sym, 0)
		}
	case wire.CmdSub, wire.CmdResume:
		if cl.stale {
			// Conflated: its resync will send the images and OKs of all
			// its subscriptions; replies now would only pile up unread.
			for i, sym := range cmd.Symbols {
				cl.sym = CanonicalSymbol(cl.sym[:0], sym)
				f.subscribe(cl, cl.hashes[i], cl.sym, string(sym) == wire.AllSymbols, ch.LastSeq())
			}
			return
		}
		if cmd.Verb == wire.CmdResume {
			s.resume(cl, cmd, f)
			return
		}
		now := time.Now().UnixNano()
		all := slices.ContainsFunc(cmd.Symbols, func(sym []byte) bool { return string(sym) == wire.AllSymbols })
		var p uint64
		if all { // every image first (in parts), then the named ones at the same P
			cl.out, p = ch.appendAllImagesRLocked(cl.out, now)
		} else {
			ch.mu.RLock()
			p = ch.core.LastSeq()
		}
		for i, sym := range cmd.Symbols {
			cl.sym = CanonicalSymbol(cl.sym[:0], sym)
			// A client on "*" has every symbol's image and updates
			// already: an image now would repeat frames still queued.
			s.subscribeAt(cl, cl.hashes[i], cl.sym, string(sym) == wire.AllSymbols, !all && !cl.all, p, now)
		}
		ch.mu.RUnlock()
		if all {
			f.covered(cl, p)
		}
	}
}

// distinct drops the repeats of a symbol (by canonical form) from syms, in
// place: each is answered once. It leaves the symbols' hashes, in order,
// in cl.hashes, for the command to use.
func (cl *client) distinct(syms [][]byte) [][]byte {
	seen := cl.loop.seen
	if seen == nil {
		seen = make(map[uint64]struct{})
		cl.loop.seen = seen
	}
	clear(seen)
	out := syms[:0]
	cl.hashes = cl.hashes[:0]
	for _, sym := range syms {
		cl.sym = CanonicalSymbol(cl.sym[:0], sym)
		h := SymbolHash(cl.sym)
		if _, dup := seen[h]; !dup {
			seen[h] = struct{}{}
			out = append(out, sym)
			cl.hashes = append(cl.hashes, h)
		}
	}
	return out
}

// subscribeAt subscribes cl to the canonical symbol sym (or to "*": all)
// from seq p on and appends what a SUB answers: the symbol's image (when
// image; "*"'s comes from appendAllImagesRLocked), then "OK SUB sym p". The
// caller holds the core's read lock, under which it took p, so the image
// and the subscription meet exactly at p.
func (s *server) subscribeAt(cl *client, hash uint64, sym []byte, all, image bool, p uint64, now int64) {
	if image && !all {
		cl.out = s.ch.core.AppendImage(cl.out, sym, now)
	}
	cl.loop.f.subscribe(cl, hash, sym, all, p)
	cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, p)
}

// imagePart is how many symbols' images appendAllImagesRLocked builds per
// hold of the core's read lock (~0.15 ms): SUB * at HKEX scale (17k
// symbols, 7 MB) took 11 ms in one hold, as long a stall for the relay
// lines and, behind their waiting writer, every loop's SUB.
const imagePart = 512

// appendAllImagesRLocked appends SUB *'s image: every symbol's, imagePart
// symbols per hold of the core's read lock, then the history frames each
// part missed (Core.AppendMissed). It returns still holding the read lock,
// with P = LastSeq: the image stands as if taken at P in one hold. Should
// the history no longer hold what the parts missed, it images everything
// again in this hold.
func (ch *Child) appendAllImagesRLocked(dst []byte, now int64) ([]byte, uint64) {
	start := len(dst)
	var cuts []ImageCut
	for from, more := uint32(0), true; more; {
		if len(cuts) > 0 {
			ch.mu.RUnlock()
		}
		ch.mu.RLock()
		cuts = append(cuts, ImageCut{From: from, Seq: ch.core.LastSeq()})
		dst, from, more = ch.core.AppendImages(dst, from, imagePart, now)
	}
	out, ok := ch.core.AppendMissed(dst, cuts, now)
	if !ok {
		out = ch.core.AppendAllImages(dst[:start], now)
	}
	return out, ch.core.LastSeq()
}

// resumePart is how many seqs of history RESUME scans per hold of the
// core's read lock (~0.6 ms; the whole 64 MiB history took 12 ms).
const resumePart = 16384

// resume runs RESUME seq sym...: the history from seq (or ERR GONE), then
// every update after it.
func (s *server) resume(cl *client, cmd wire.Command, f *fanout) {
	ch := s.ch
	now := time.Now().UnixNano()
	all := slices.ContainsFunc(cmd.Symbols, func(sym []byte) bool { return string(sym) == wire.AllSymbols })
	n := len(cl.hashes) // cmd.Symbols' hashes (distinct); cl.hashes[n:]: the same, sorted, for the history's matching
	cl.hashes = append(cl.hashes, cl.hashes...)
	match := cl.hashes[n:]
	slices.Sort(match)
	at := len(cl.out)
	out := wire.AppendOK(cl.out, wire.CmdResume, nil, cmd.Seq)
	// The history in parts of resumePart seqs, each in a hold of the core's
	// read lock; P is LastSeq in the hold that reaches it.
	ch.mu.RLock()
	next, ok := cmd.Seq, true
	for {
		out, next, ok = ch.core.AppendHistoryPart(out, next, match, all, now, resumePart)
		if !ok || next > ch.core.LastSeq() {
			break
		}
		ch.mu.RUnlock()
		ch.mu.RLock()
	}
	p := ch.core.LastSeq()
	oldest := ch.core.OldestSeq()
	ch.mu.RUnlock()
	if !ok {
		cl.out = cl.out[:at]
		s.replyErr(cl, wire.ErrCodeGone, fmt.Sprintf("seq %d is no longer held; oldest %d, last %d", cmd.Seq, oldest, p))
		return
	}
	cl.out = out
	from := max(p, cmd.Seq-1)
	for i, sym := range cmd.Symbols {
		cl.sym = CanonicalSymbol(cl.sym[:0], sym)
		f.subscribe(cl, cl.hashes[i], cl.sym, string(sym) == wire.AllSymbols, from)
	}
	if all {
		f.covered(cl, p) // the history covered the named ones up to p (not from: a future seq)
	}
}

// shutdown runs on each loop at the end: flush what is queued, tell every
// client, and close them.
func (l *loop) shutdown() {
	l.drain()
	for cl := range l.clients {
		l.s.writeErr(cl, wire.ErrCodeShutdown, "child is shutting down")
		l.s.closeNow(cl)
	}
}
