package root

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/control"
	"tickrelay/internal/gnetaddr"
	"tickrelay/internal/gnetlog"
	"tickrelay/latency"
	"tickrelay/wire"
)

// maxChildFrame bounds a frame from a child (hello, time request, error,
// a control op of up to control.MaxSyms symbols); anything longer is a
// bad frame.
const maxChildFrame = 4*control.MaxSyms + 4<<10

// storeChunk is how many bytes of batches a store catch-up builds per write.
const storeChunk = 256 << 10

// relay is the gnet side of the root: it serves child connections, each a
// cursor into the ring.
//
// Drain scheme: the feed goroutine appends to the ring and then calls
// signalFed, which asks each event loop with children to run a drain pass
// through EventLoop.Execute, only when no pass is already pending for that
// loop (loop.pending). The gnet ticker (OnTick, every Config.Tick) signals
// every loop, as a safety net and to send heartbeats. A pass walks the loop's
// children and writes each from its cursor towards the ring head in batches
// (one Write of at most MaxBatchBytes of items each), stopping per child at
// WriteBudget bytes per pass or when its outbound buffer holds more than
// MaxOutbound (backpressure: the next pass resumes it). Catch-up and live
// delivery are the same path. Everything about a child is touched only on its
// loop, except the store catch-up goroutine, which owns its own cursor and
// hands over to the loop through AsyncWrite callbacks and Execute.
type relay struct {
	gnet.BuiltinEventEngine
	r *Root

	eng    gnet.Engine
	addr   net.Addr
	booted chan struct{}

	mu      sync.Mutex // guards byLoop; taken only in OnOpen
	byLoop  map[gnet.EventLoop]*loop
	loops   atomic.Pointer[[]*loop] // snapshot read by signalAll
	drain   atomic.Bool             // shutting down: flush, then say goodbye
	stopped chan struct{}           // closed when Run is done with the engine
	wg      sync.WaitGroup          // store catch-up goroutines
	dir     *dirState               // the child directory (directory.go)
	ctl     *ctlState               // the control stream (control.go)
	// ownersShown is when OnTick last redid the alerts-per-identity gauge.
	ownersShown time.Time
}

func newRelay(r *Root) *relay {
	rl := &relay{r: r, booted: make(chan struct{}), byLoop: map[gnet.EventLoop]*loop{}, stopped: make(chan struct{}),
		dir: newDirState(r.cfg.AnnounceEvery), ctl: newCtlState(r.cfg.GroupLinger)}
	rl.loops.Store(&[]*loop{})
	return rl
}

// loop is the per-event-loop state. conns, iter and scratch are touched only
// on the loop's goroutine.
type loop struct {
	rl      *relay
	el      gnet.EventLoop
	idx     int           // registration order: the loop's hops shard is idx+1
	pending atomic.Bool   // a drain pass is queued
	nconns  atomic.Int32  // children on this loop (for signalFed)
	passes  atomic.Uint64 // drain passes run
	flushed atomic.Bool   // during shutdown: every child got everything and a goodbye
	run     gnet.RunnableFunc
	conns   []*child
	iter    []*child
	scratch []byte
	ctlBuf  []byte           // a control record's body (control.go)
	br      wire.BatchReader // rereads what was sent, for the root hop
}

type childState uint8

const (
	stateHello   childState = iota // waiting for Hello
	stateRing                      // streaming from the ring
	stateStore                     // catching up from the Store off the loop
	stateClosing                   // error sent, close requested
	stateClosed                    // OnClose ran; never touch c again
)

// child is one child connection.
type child struct {
	c        gnet.Conn
	l        *loop
	log      *slog.Logger
	state    childState
	cursor   uint64 // next seq to send (ring state)
	opened   int64  // when it connected (for HelloTimeout)
	lastSend int64
	goodbye  bool // Shutdown frame sent
	// line identifies the connection in the directory; badAnnounce: an
	// announcement of it was refused (logged once).
	line        int
	badAnnounce bool
	// The control records it has (control.go): of era, up to serial.
	ctlEra, ctlSerial uint64
	// store catch-up hand-off
	storeWaiting bool          // goroutine waits for the outbound buffer to drain
	wake         chan struct{} // cap 1: loop -> store goroutine
	done         chan struct{} // closed by OnClose
}

// start runs the gnet engine in the background until Engine.Stop and waits
// until it is bound. errc receives gnet.Run's result.
func (rl *relay) start(errc chan error) error {
	cfg := &rl.r.cfg
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReusePort(false), // one listener: ":0" must bind one port
		// SO_REUSEADDR (as net.Listen sets it): a root restarted after a crash
		// must rebind its port while old child conns sit in TIME_WAIT.
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetlog.Logger{L: rl.r.log.With("component", "gnet")}),
		gnet.WithNumEventLoop(cfg.RelayLoops()),
	}
	go func() { errc <- gnet.Run(rl, "tcp://"+cfg.Addr, opts...) }()
	select {
	case <-rl.booted:
		return nil
	case err := <-errc:
		if err == nil {
			err = errors.New("gnet engine stopped before boot")
		}
		return fmt.Errorf("relay listen %s: %w", cfg.Addr, err)
	}
}

// OnBoot learns the bound address (how ":0" reveals its port).
func (rl *relay) OnBoot(eng gnet.Engine) gnet.Action {
	rl.eng = eng
	addr, err := gnetaddr.Bound(eng)
	if err != nil {
		rl.r.log.Error("relay: cannot learn the bound address", "err", err)
		return gnet.Shutdown
	}
	rl.addr = addr
	close(rl.booted)
	return gnet.None
}

// OnTick signals every loop: heartbeats, resumed backpressure, safety net.
func (rl *relay) OnTick() (time.Duration, gnet.Action) {
	rl.signalAll()
	rl.publishDirectory()
	rl.expireHeld()
	if now := time.Now(); now.Sub(rl.ownersShown) >= alertOwnersEvery {
		rl.ownersShown = now
		rl.showAlertOwners()
	}
	return rl.r.cfg.Tick, gnet.None
}

// signalAll queues a drain pass on every loop that has none pending. Safe
// from any goroutine; allocation only when a pass is actually queued.
func (rl *relay) signalAll() {
	for _, l := range *rl.loops.Load() {
		l.signal()
	}
}

// signalFed is signalAll for the feed goroutine after it appended items:
// it skips loops without children, which have nothing to send. A loop that
// only a probe or a departed child ever reached otherwise woke for every
// read of the feed (a thread switch each, ~1000/s at 10k msgs/s); OnTick and
// the shutdown drain still signal every loop.
func (rl *relay) signalFed() {
	for _, l := range *rl.loops.Load() {
		if l.nconns.Load() > 0 {
			l.signal()
		}
	}
}

func (l *loop) signal() {
	if l.pending.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l.run); err != nil {
			l.pending.Store(false) // engine shutting down
		}
	}
}

// loopFor returns the state of el, creating it on first sight.
func (rl *relay) loopFor(el gnet.EventLoop) *loop {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if l := rl.byLoop[el]; l != nil {
		return l
	}
	l := &loop{rl: rl, el: el, idx: len(*rl.loops.Load()), scratch: make([]byte, 0, rl.r.cfg.MaxBatchBytes+wire.RelayBatchHeader+wire.MaxRelayItem)}
	l.run = func(context.Context) error { l.pass(); return nil }
	rl.byLoop[el] = l
	all := append(append([]*loop(nil), *rl.loops.Load()...), l)
	rl.loops.Store(&all)
	return l
}

func (rl *relay) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	l := rl.loopFor(c.EventLoop())
	now := rl.r.now()
	ch := &child{c: c, l: l, log: rl.r.log.With("child", c.RemoteAddr().String()), opened: now, lastSend: now,
		wake: make(chan struct{}, 1), done: make(chan struct{}), line: int(rl.dir.lines.Add(1))}
	c.SetContext(ch)
	l.conns = append(l.conns, ch)
	l.nconns.Add(1)
	rl.r.m.Children.Inc()
	ch.log.Info("child connected")
	if rl.drain.Load() {
		ch.fail(wire.CodeShutdown, rl.r.ring.Head(), "root shutting down")
	}
	return nil, gnet.None
}

func (rl *relay) OnClose(c gnet.Conn, err error) gnet.Action {
	ch, ok := c.Context().(*child)
	if !ok {
		return gnet.None
	}
	ch.state = stateClosed
	close(ch.done)
	rl.lineDown(ch)
	rl.controlLineDown(ch)
	l := ch.l
	for i, x := range l.conns {
		if x == ch {
			last := len(l.conns) - 1
			l.conns[i], l.conns[last] = l.conns[last], nil
			l.conns = l.conns[:last]
			break
		}
	}
	l.nconns.Add(-1)
	rl.r.m.Children.Dec()
	ch.log.Info("child disconnected", "err", err, "epoch", wire.PosEpoch(ch.cursor), "next_seq", wire.PosSeq(ch.cursor))
	return gnet.None
}

// OnTraffic reads the child's frames: Hello, TimeReq, Error.
func (rl *relay) OnTraffic(c gnet.Conn) gnet.Action {
	ch := c.Context().(*child)
	if ch.state >= stateClosing {
		c.Discard(c.InboundBuffered())
		return gnet.None
	}
	now := rl.r.now()
	buf, _ := c.Peek(-1)
	used := 0
	for ch.state < stateClosing {
		b := buf[used:]
		if len(b) >= wire.RelayLenSize {
			if l := binary.LittleEndian.Uint32(b); l > maxChildFrame {
				ch.fail(wire.CodeBadFrame, 0, fmt.Sprintf("frame of %d bytes > %d", l, maxChildFrame))
				break
			}
		}
		typ, p, n, err := wire.NextRelayFrame(b)
		if errors.Is(err, wire.ErrShort) {
			break
		}
		if err != nil {
			ch.fail(wire.CodeBadFrame, 0, err.Error())
			break
		}
		used += n
		switch typ {
		case wire.RelayHello:
			if ch.state != stateHello {
				ch.fail(wire.CodeBadFrame, 0, "second hello")
				break
			}
			rl.hello(ch, wire.ParseHello(p), now)
		case wire.RelayTimeReq:
			// A child that asks but does not read gets no more replies than
			// its backpressure allows (it could not use them anyway).
			if c.OutboundBuffered() <= rl.r.cfg.MaxOutbound {
				t0 := wire.ParseTimeReq(p)
				ch.write(wire.AppendTimeReply(ch.l.scratch[:0], t0, now, rl.r.now()))
			}
		case wire.RelayAnnounce:
			rl.announce(ch, p)
		case wire.RelayControlSync:
			if ch.state != stateHello {
				ch.fail(wire.CodeBadFrame, 0, "control sync after hello")
				break
			}
			ch.ctlEra, ch.ctlSerial = wire.ParseControlSync(p)
		case wire.RelayControlReq:
			rl.submitControl(ch, p)
		case wire.RelayError:
			e := wire.ParseRelayError(p)
			ch.log.Warn("child sent an error; closing", "code", e.Code, "seq", e.Seq, "reason", e.Reason)
			ch.close()
		default:
			ch.fail(wire.CodeBadFrame, 0, fmt.Sprintf("unexpected frame type %q from a child", typ))
		}
	}
	if ch.state != stateClosed {
		c.Discard(used)
	}
	return gnet.None
}

// hello starts streaming to ch from h.FromSeq (0: from the live edge).
func (rl *relay) hello(ch *child, h wire.Hello, now int64) {
	first, head := rl.r.ring.Bounds()
	epoch := h.Epoch
	if epoch == 0 { // the current one
		epoch = wire.PosEpoch(head + 1)
	}
	from := wire.Pos(epoch, h.FromSeq)
	if h.FromSeq == 0 {
		from = head + 1
	}
	ch.log = ch.log.With("name", h.Name)
	ch.log.Info("child hello", "epoch", h.Epoch, "from_seq", h.FromSeq, "ring_epoch", wire.PosEpoch(head+1), "ring_first", wire.PosSeq(first), "head", wire.PosSeq(head))
	switch {
	case h.FromSeq > wire.MaxSeq:
		ch.fail(wire.CodeBadFrame, 0, fmt.Sprintf("from seq %d is beyond an epoch's %d", h.FromSeq, uint64(wire.MaxSeq)))
	case from > head+1:
		ch.fail(wire.CodeSeqFuture, head, fmt.Sprintf("from epoch %d seq %d is beyond the head (epoch %d seq %d) + 1", epoch, h.FromSeq, wire.PosEpoch(head), wire.PosSeq(head)))
	case h.Epoch == 0 && epoch != 0 && !ch.write(wire.AppendReset(ch.l.scratch[:0], wire.Reset{Epoch: epoch, Seq: wire.PosSeq(from)})):
		// A child that asked for the current epoch is told which it is.
	case !rl.startControls(ch):
	case from >= first:
		ch.state, ch.cursor = stateRing, from
		if ch.l.drainChild(ch, now) {
			ch.l.signal()
		}
	default:
		ch.lapped(from, first)
	}
}

// lapped handles a child whose next seq is older than the ring: catch up
// from the Store, or tell it the seq is gone.
func (ch *child) lapped(from, first uint64) {
	rl := ch.l.rl
	if rl.r.cfg.Store == nil || rl.drain.Load() {
		if next, ok := rl.r.ring.NextEpoch(from); ok && !rl.r.ring.HoldsEpoch(wire.PosEpoch(from)) {
			ch.cross(from, next) // what was left of its epoch is gone
			return
		}
		if from == wire.Pos(0, 1) && rl.r.ring.Fresh() {
			// It said Hello before the root's first item ever, and the
			// exchange's epoch is known but its first item not yet in:
			// nothing is lost; it crosses into that epoch with that item.
			ch.state, ch.cursor = stateRing, from
			return
		}
		ch.fail(wire.CodeSeqGone, first, fmt.Sprintf("seq %d is gone; oldest held is %d", wire.PosSeq(from), wire.PosSeq(first)))
		return
	}
	ch.state, ch.cursor, ch.storeWaiting = stateStore, from, false
	rl.wg.Add(1)
	go rl.storeCatchUp(ch, from)
}

// cross moves ch, on its loop, from position from (of an epoch the ring no
// longer holds) to next, of a later one: a Reset frame, then the ring.
func (ch *child) cross(from, next uint64) {
	r := ch.l.rl.r.crossing(from, next)
	ch.log.Info("child crosses to a new epoch", "epoch", r.Epoch, "seq", r.Seq, "prev_epoch", r.Prev, "prev_last_seq", r.PrevLast)
	if !ch.write(wire.AppendReset(ch.l.scratch[:0], r)) {
		return
	}
	ch.state, ch.cursor = stateRing, next
	if ch.l.drainChild(ch, ch.l.rl.r.now()) {
		ch.l.signal()
	}
}

// write writes b on the loop; false when the write closed the conn.
func (ch *child) write(b []byte) bool {
	if _, err := ch.c.Write(b); err != nil || ch.state == stateClosed {
		return false
	}
	ch.l.rl.r.m.BytesSent.Add(float64(len(b)))
	return true
}

// fail sends an error frame and closes the child (unsent bytes are flushed
// best-effort by gnet's close).
func (ch *child) fail(code uint16, seq uint64, reason string) {
	m := ch.l.rl.r.m
	m.ChildErrors.WithLabelValues(wire.RelayCodeName(code)).Inc()
	if code == wire.CodeShutdown {
		ch.log.Info("closing child", "code", code, "seq", seq, "reason", reason)
	} else {
		ch.log.Warn("closing child", "code", code, "seq", seq, "reason", reason)
	}
	if !ch.write(wire.AppendRelayError(ch.l.scratch[:0], wire.RelayErr{Code: code, Seq: seq, Reason: reason})) {
		return
	}
	ch.close()
}

func (ch *child) close() {
	if ch.state < stateClosing {
		ch.state = stateClosing
		ch.c.Close()
	}
}

// pass is one drain pass over the loop's children (runs on the loop).
func (l *loop) pass() {
	l.pending.Store(false)
	l.passes.Add(1)
	rl := l.rl
	now := rl.r.now()
	draining := rl.drain.Load()
	more, unflushed := false, 0
	l.iter = append(l.iter[:0], l.conns...) // OnClose may edit conns while we write
	for i, ch := range l.iter {
		l.iter[i] = nil
		switch ch.state {
		case stateRing:
			if l.drainChild(ch, now) {
				more = true
			}
			if ch.state == stateRing && now-ch.lastSend >= int64(rl.r.cfg.Heartbeat) {
				if ch.write(wire.AppendHeartbeatFrame(l.scratch[:0], rl.r.ring.Head(), now)) {
					ch.lastSend = now
				}
			}
		case stateHello:
			if now-ch.opened > int64(rl.r.cfg.HelloTimeout) {
				ch.fail(wire.CodeBadFrame, 0, fmt.Sprintf("no hello within %v", rl.r.cfg.HelloTimeout))
			}
		case stateStore:
			if ch.storeWaiting && ch.c.OutboundBuffered() < rl.r.cfg.MaxOutbound/2 {
				ch.storeWaiting = false
				ch.wakeStore()
			}
		}
		if !draining {
			continue
		}
		switch ch.state {
		case stateRing:
			if !ch.goodbye && ch.cursor > rl.r.ring.Head() {
				ch.goodbye = true
				ch.write(wire.AppendRelayError(l.scratch[:0], wire.RelayErr{Code: wire.CodeShutdown, Seq: ch.cursor - 1, Reason: "root shutting down"}))
			}
			if ch.state == stateRing && (!ch.goodbye || ch.c.OutboundBuffered() > 0) {
				unflushed++
			}
		case stateHello, stateStore:
			ch.fail(wire.CodeShutdown, rl.r.ring.Head(), "root shutting down")
		}
	}
	l.iter = l.iter[:0]
	if draining {
		l.flushed.Store(unflushed == 0)
	}
	if more {
		l.signal()
	}
}

// drainChild writes ch from its cursor towards the ring head. It reports
// whether ch has more to send right now (budget used up, not blocked).
func (l *loop) drainChild(ch *child, now int64) bool {
	cfg := &l.rl.r.cfg
	for budget := cfg.WriteBudget; budget > 0; {
		if ch.c.OutboundBuffered() > cfg.MaxOutbound {
			return false // resumes on a later pass, once the socket drained
		}
		// Up to the head as of the control check, and a record due goes
		// right after the items up to its place (control.go).
		r, ok, to := l.rl.nextControl(ch)
		if ok {
			if r.After < ch.cursor {
				if !ch.writeControl(r) {
					return false
				}
				continue
			}
			to = min(to, r.After)
		}
		b, n, err := l.rl.r.ring.AppendBatchTo(l.scratch[:0], ch.cursor, to, cfg.MaxBatchBytes, now)
		if cap(b) > cap(l.scratch) {
			l.scratch = b[:0]
		}
		if errors.Is(err, ErrEpochEnd) { // it has the whole epoch: on to the next
			if next, ok := l.rl.r.ring.NextEpoch(ch.cursor); ok {
				ch.cross(ch.cursor, next)
			}
			return false
		}
		if err != nil {
			ch.lapped(ch.cursor, l.rl.r.ring.First())
			return false
		}
		if n == 0 {
			return false
		}
		if !ch.write(b) {
			return false
		}
		l.recordDwell(b)
		l.rl.r.m.Batches.Inc()
		ch.cursor += uint64(n)
		ch.lastSend = now
		budget -= len(b)
	}
	return ch.state == stateRing && ch.cursor <= l.rl.r.ring.Head()
}

// recordDwell adds the time each item of the relay batch frame b spent in
// the root (its RootSend minus its RootRecv) to the loop's hops shard.
func (l *loop) recordDwell(b []byte) {
	_, payload, _, err := wire.NextRelayFrame(b)
	if err != nil {
		return
	}
	l.br.Reset(payload)
	l.rl.r.hops.With(l.idx+1, func(h *latency.Hops) {
		for recv, ok := l.br.NextRecv(); ok; recv, ok = l.br.NextRecv() {
			h.RecordHop(latency.HopRoot, l.br.RootSend-recv)
		}
	})
}

func (ch *child) wakeStore() {
	select {
	case ch.wake <- struct{}{}:
	default:
	}
}

// storeCatchUp streams a child from the Store (off the loop) until its
// cursor reaches the ring, then hands it back to its loop.
func (rl *relay) storeCatchUp(ch *child, from uint64) {
	defer rl.wg.Done()
	cfg := &rl.r.cfg
	ch.log.Info("child catching up from the store", "from_seq", from)
	var (
		buf   = make([]byte, 0, storeChunk+cfg.MaxBatchBytes+wire.RelayBatchHeader+wire.MaxRelayItem)
		next  = from
		b     batcher
		found uint64 // first seq the store had, when not next
	)
	for {
		if first := rl.r.ring.First(); next >= first {
			rl.handOver(ch, next, next)
			return
		}
		buf, found = buf[:0], 0
		b.reset(rl.r.now(), wire.PosEpoch(next))
		err := cfg.Store.Range(next, func(seq uint64, item []byte) bool {
			if seq != next {
				found = seq
				return false
			}
			buf = b.add(buf, item, cfg.MaxBatchBytes)
			next++
			return len(buf) < storeChunk
		})
		buf = b.end(buf)
		if err == nil && b.items == 0 {
			first := rl.r.ring.First()
			if found == 0 || found > first {
				found = first
			}
			switch {
			case next >= first:
			case wire.PosEpoch(found) > wire.PosEpoch(next):
				// The end of next's epoch: on to the next one held.
				if found >= first {
					rl.handOver(ch, next, found)
					return
				}
				buf = wire.AppendReset(buf, rl.r.crossing(next, found))
				next = found
			default:
				err = fmt.Errorf("seq %d is gone; oldest held is %d", wire.PosSeq(next), wire.PosSeq(found))
			}
		}
		if err != nil {
			oldest := found
			if oldest == 0 {
				oldest = rl.r.ring.First()
			}
			rl.execOn(ch, func() { ch.fail(wire.CodeSeqGone, oldest, "store catch-up: "+err.Error()) })
			return
		}
		if len(buf) == 0 {
			continue // the ring has it now
		}
		n, nb := len(buf), b.batches
		err = ch.c.AsyncWrite(buf, func(c gnet.Conn, err error) error {
			if err != nil || ch.state != stateStore {
				return nil
			}
			rl.r.m.BytesSent.Add(float64(n))
			rl.r.m.Batches.Add(float64(nb))
			ch.lastSend = rl.r.now()
			if c.OutboundBuffered() < cfg.MaxOutbound {
				ch.wakeStore()
			} else {
				ch.storeWaiting = true
			}
			return nil
		})
		if err != nil {
			return
		}
		select {
		case <-ch.wake:
		case <-ch.done:
			return
		case <-rl.stopped:
			return
		}
	}
}

// handOver moves ch from store catch-up to the ring (on its loop): at
// next, or (next the end of its epoch) with a Reset on to at.
func (rl *relay) handOver(ch *child, next, at uint64) {
	rl.execOn(ch, func() {
		if ch.state != stateStore {
			return
		}
		ch.log.Info("child caught up from the store; streaming from the ring", "epoch", wire.PosEpoch(next), "next_seq", wire.PosSeq(next))
		if at != next {
			ch.cross(next, at)
			return
		}
		ch.state, ch.cursor = stateRing, next
		if ch.l.drainChild(ch, rl.r.now()) {
			ch.l.signal()
		}
	})
}

// execOn runs fn on ch's loop unless ch is gone.
func (rl *relay) execOn(ch *child, fn func()) {
	ch.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if ch.state < stateClosing {
			fn()
		}
		return nil
	}))
}

// batcher builds consecutive batch frames from relay items.
type batcher struct {
	rootSend int64
	epoch    uint32 // of the items
	at       int    // offset of the open batch, -1 when none
	start    int    // offset of its first item
	n        int    // items in the open batch
	maxRecv  int64
	items    int // items in all batches since reset
	batches  int
}

func (b *batcher) reset(rootSend int64, epoch uint32) {
	*b = batcher{rootSend: rootSend, epoch: epoch, at: -1}
}

// add appends item, closing the open batch first when it would exceed max
// bytes of items.
func (b *batcher) add(dst, item []byte, max int) []byte {
	if b.at >= 0 && len(dst)-b.start+len(item) > max {
		dst = b.end(dst)
	}
	if b.at < 0 {
		dst, b.at = wire.BeginBatch(dst, b.epoch, b.rootSend)
		b.start, b.n, b.maxRecv = len(dst), 0, b.rootSend
	}
	if recv := int64(binary.LittleEndian.Uint64(item)); recv > b.maxRecv {
		b.maxRecv = recv
	}
	b.n++
	b.items++
	return append(dst, item...)
}

// end closes the open batch, if any.
func (b *batcher) end(dst []byte) []byte {
	if b.at < 0 {
		return dst
	}
	if b.maxRecv != b.rootSend {
		binary.LittleEndian.PutUint64(dst[b.at+wire.RelayLenSize+1:], uint64(b.maxRecv))
	}
	dst = wire.EndBatch(dst, b.at, b.n)
	b.at = -1
	b.batches++
	return dst
}
