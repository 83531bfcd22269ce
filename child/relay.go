package child

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// sessionEnd says how a relay session ended and what to do next.
type sessionEnd struct {
	err      error
	progress bool // received at least one frame: reset the backoff
	now      bool // reconnect at once (gap, seq gone)
	yield    bool // its root cannot serve the next seq yet while another line may
	held     bool // with yield: its root lost the seqs and a line that may have them is rejoining
	streamed bool // the line was streaming in this session
	dial     bool // the dial failed: no session began
}

// line is the relay line to one root (Config.Roots[i]).
type line struct {
	i      int
	addr   string
	offset atomic.Int64 // clock offset estimate (this root - child), ns
	bound  atomic.Int64 // its error bound, ns; -1 before any sample
	up     prometheus.Gauge
	items  prometheus.Counter
	send   atomic.Pointer[func([]byte) error] // the session's writer while one runs (control.go)
}

// outage is a run of failed dials to a root.
type outage struct {
	since, said time.Time
	attempts    int
}

// logSessionEnd logs how a relay session ended. Failed dials are said once
// per outage, then a reminder a minute: a root gone for hours does not
// fill the log.
func (ch *Child) logSessionEnd(l *line, out *outage, end sessionEnd) {
	now := time.Now()
	switch {
	case end.dial && out.since.IsZero():
		out.since, out.said = now, now
		ch.log.Warn("cannot reach the root; retrying (said again each minute while it lasts)", "root", l.addr, "err", end.err, "last_seq", ch.LastSeq())
		return
	case end.dial:
		if out.attempts++; now.Sub(out.said) >= time.Minute {
			out.said = now
			ch.log.Warn("root still unreachable; retrying", "root", l.addr, "for", now.Sub(out.since).Round(time.Second), "attempts", out.attempts+1, "err", end.err)
		}
		return
	}
	*out = outage{} // a session began ("relay session" said so): the outage is over
	ch.log.Warn("relay session ended", "root", l.addr, "err", end.err, "last_seq", ch.LastSeq())
}

// relayLoop runs relay sessions to l's root until ctx ends, reconnecting
// with backoff.
func (ch *Child) relayLoop(ctx context.Context, l *line) {
	backoff := ch.cfg.BackoffMin
	var out outage // the root unreachable since
	for n := 0; ctx.Err() == nil; n++ {
		if n > 0 {
			ch.metrics.Reconnects.Inc()
		}
		ch.relayMu.Lock()
		wake := ch.arb.wake
		ch.relayMu.Unlock()
		end := ch.session(ctx, l)
		if ctx.Err() != nil {
			return
		}
		if end.progress {
			backoff = ch.cfg.BackoffMin
		}
		ch.logSessionEnd(l, &out, end)
		// A gap or a SeqGone restart retries after the shortest wait; a
		// failure without progress backs off (with jitter) up to BackoffMax.
		wait := ch.cfg.BackoffMin
		if !end.now {
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, ch.cfg.BackoffMax)
		}
		// With other lines, the wait ends when the last streaming one goes
		// down, or went down already: during this session, if this one
		// yielded to it or was not streaming itself.
		ch.relayMu.Lock()
		if !ch.arb.anyUp() && (end.yield || !end.streamed && closed(wake)) {
			wait = 0
			if end.held { // until the rejoin that holds it ends (asked now: it may have)
				_, wait = ch.arb.maySkip(l.i, time.Now())
			}
		}
		wake = ch.arb.wake
		ch.relayMu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-wake:
			backoff = ch.cfg.BackoffMin
		}
	}
}

// session is one connection to l's root: Hello from LastSeq+1, then read
// frames until an error, a gap, an idle timeout or ctx's end.
func (ch *Child) session(ctx context.Context, l *line) (end sessionEnd) {
	d := net.Dialer{Timeout: ch.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		ch.lineEnded(l)
		return sessionEnd{err: err, dial: true}
	}
	from, epoch := ch.LastSeq()+1, ch.Epoch()
	log := ch.log.With("root", l.addr)
	log.Info("relay session", "epoch", epoch, "from_seq", from)

	var wmu sync.Mutex // the writer goroutine and the reader both write
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(ch.cfg.IdleTimeout))
		_, err := conn.Write(b)
		return err
	}
	ctlEra, ctlSerial := ch.controlsApplied()
	hello := wire.AppendControlSync(nil, ctlEra, ctlSerial) // before the hello: the root places our control stream by it
	hello = wire.AppendHello(hello, wire.Hello{FromSeq: from, Epoch: epoch, Name: ch.cfg.Name})
	if err := write(hello); err != nil {
		conn.Close()
		ch.lineEnded(l)
		return sessionEnd{err: fmt.Errorf("hello: %w", err)}
	}
	l.send.Store(&write)
	defer l.send.Store(nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // clock requests; closes the conn when ctx ends
		defer wg.Done()
		t := time.NewTicker(min(ch.cfg.ClockInterval, ch.cfg.AnnounceEvery))
		defer t.Stop()
		var (
			buf               []byte
			load              announceLoad
			announceAt, reqAt time.Time
			drain             = ch.drainNow
		)
		for {
			buf = buf[:0]
			now := time.Now()
			if now.Sub(reqAt) >= ch.cfg.ClockInterval*9/10 { // ticks jitter
				reqAt = now
				buf = wire.AppendTimeReq(buf, now.UnixNano())
			}
			if now.Sub(announceAt) >= ch.cfg.AnnounceEvery*9/10 || drain == nil {
				announceAt = now
				var err error
				if buf, err = wire.AppendAnnounce(buf, ch.announcement(&load, now)); err != nil {
					log.Warn("cannot announce this child", "err", err)
				}
				if drain == nil {
					drain = make(chan struct{}) // announced: never again
				}
			}
			if len(buf) > 0 && write(buf) != nil {
				return
			}
			select {
			case <-ctx.Done():
				conn.Close()
				return
			case <-stop:
				return
			case <-t.C:
			case <-drain:
				drain = nil // the drain began: announce it now
			}
		}
	}()
	defer func() {
		close(stop)
		conn.Close()
		wg.Wait()
	}()
	end = ch.readRelay(conn, l, log)
	return end
}

// logger is what the relay logs with (a *slog.Logger carrying the root).
type logger interface {
	Info(string, ...any)
	Warn(string, ...any)
	Error(string, ...any)
}

// lineEnded tells the arbiter a session of l ended; it reports whether l
// was streaming in it.
func (ch *Child) lineEnded(l *line) (streamed bool) {
	ch.setView(l, nil)
	ch.relayMu.Lock()
	defer ch.relayMu.Unlock()
	l.up.Set(0)
	return ch.arb.ended(l.i, time.Now())
}

// closed reports whether c is closed.
func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// readRelay reads relay frames from conn and applies them.
func (ch *Child) readRelay(conn net.Conn, l *line, log logger) (end sessionEnd) {
	defer func() { end.streamed = ch.lineEnded(l) }()
	clock := NewClock(ch.cfg.ClockWindow)
	buf := make([]byte, 256<<10)
	r, w := 0, 0
	var br wire.BatchReader
	progress := false // a frame arrived in this session
	for {
		n, end, done := ch.consume(l, clock, &br, buf[r:w], log)
		progress = progress || end.progress
		if done {
			return end
		}
		r += n
		// Keep the partial frame, moved to the front, and make room for it.
		if r == w {
			r, w = 0, 0
		} else if r > 0 && len(buf)-w < 64<<10 {
			w = copy(buf, buf[r:w])
			r = 0
		}
		if need := frameLen(buf[r:w]); need > len(buf)-r {
			nb := make([]byte, max(2*len(buf), need))
			w = copy(nb, buf[r:w])
			r, buf = 0, nb
		}
		conn.SetReadDeadline(time.Now().Add(ch.cfg.IdleTimeout))
		n, err := conn.Read(buf[w:])
		w += n
		if err != nil {
			if n > 0 {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("no frame from the root for %v: %w", ch.cfg.IdleTimeout, err)
			} else if errors.Is(err, io.EOF) {
				err = errors.New("root closed the connection")
			}
			return sessionEnd{progress: progress, err: err}
		}
	}
}

// consume handles every complete relay frame at the start of p, holding
// relayMu so the lines apply one at a time, and publishes the open batch
// before it lets go (the next line, or the wait for more bytes, must not
// find it open). It returns the bytes consumed; done ends the session.
func (ch *Child) consume(l *line, clock *Clock, br *wire.BatchReader, p []byte, log logger) (n int, end sessionEnd, done bool) {
	ch.relayMu.Lock()
	defer ch.relayMu.Unlock()
	defer ch.publishOpen()
	for {
		typ, frame, fn, err := wire.NextRelayFrame(p[n:])
		if errors.Is(err, wire.ErrShort) {
			return n, end, false
		}
		if err != nil {
			return n, sessionEnd{progress: end.progress, err: fmt.Errorf("relay frame: %w", err)}, true
		}
		end.progress = true
		if typ == wire.RelayBatch || typ == wire.RelayHeartbeat { // streaming (an Error is not)
			if !ch.arb.isUp(l.i) {
				l.up.Set(1)
			}
			ch.arb.streaming(l.i, typ == wire.RelayBatch)
		}
		now := time.Now().UnixNano()
		if typ != wire.RelayBatch {
			ch.publishOpen() // the core may be needed unlocked (an Error resets it)
		}
		switch typ {
		case wire.RelayBatch:
			if e := ch.applyBatch(l, br, frame, now); e.err != nil {
				e.progress = true
				return n, e, true
			}
		case wire.RelayHeartbeat:
			if a := ch.active.Load(); a == nil || a == l {
				head, _ := wire.ParseHeartbeat(frame)
				ch.metrics.RootHead.Set(float64(wire.PosSeq(head)))
			}
		case wire.RelayReset:
			ch.reset(wire.ParseReset(frame), l, log)
		case wire.RelayDirectory:
			ch.onDirectory(l, frame, log)
		case wire.RelayControl, wire.RelayControlSnapshot:
			if err := ch.onControl(l, typ, frame, log); err != nil {
				return n + fn, sessionEnd{progress: true, err: err}, true
			}
		case wire.RelayTimeReply:
			t0, t1, t2 := wire.ParseTimeReply(frame)
			if _, ok := clock.Add(t0, t1, t2, now); ok {
				off, bound, _ := clock.Estimate()
				l.offset.Store(off)
				l.bound.Store(bound)
				if a := ch.active.Load(); a == nil || a == l {
					ch.showClock(l)
				}
			}
		case wire.RelayError:
			e := ch.relayError(wire.ParseRelayError(frame), l, log)
			e.progress = e.progress || ch.arb.isUp(l.i) // an Error after streaming: back off from the start
			return n, e, true
		default:
			log.Warn("unexpected relay frame from root", "type", string(typ))
		}
		n += fn
	}
}

// showClock makes l's clock estimate the child's (ClockOffset, metrics):
// that of the line whose items the child last published.
func (ch *Child) showClock(l *line) {
	off, bound := l.offset.Load(), l.bound.Load()
	if bound < 0 {
		return
	}
	ch.offset.Store(off)
	ch.bound.Store(bound)
	ch.metrics.ClockOffset.Set(float64(off) / 1e9)
	ch.metrics.ClockBound.Set(float64(bound) / 1e9)
}

// frameLen is the full size of the relay frame starting buf (0 if unknown yet).
func frameLen(buf []byte) int {
	if len(buf) < wire.RelayLenSize {
		return 0
	}
	return wire.RelayLenSize + int(binary.LittleEndian.Uint32(buf))
}

// applyBatch drops items already seen, detects gaps and parses the rest
// into the open Batch under the core lock. The open batch is published to
// the loops once it holds frames.BatchBytes of frames, or when the read buffer
// runs dry (readRelay), so a child that fell behind hands its loops a few
// large batches rather than one per relay frame: each drain then covers
// more of the backlog and a client's frames go out in fewer writes.
func (ch *Child) applyBatch(l *line, br *wire.BatchReader, p []byte, childRecv int64) (end sessionEnd) {
	br.Reset(p)
	ch.state.Write(func(c *frames.Core) {
		switch e := c.Epoch(); {
		case br.Epoch < e: // a line still in an epoch another line ended
			ch.metrics.Duplicates.Add(float64(br.Count))
			return
		case br.Epoch > e:
			ch.metrics.Gaps.Inc()
			end = sessionEnd{now: true, err: fmt.Errorf("a batch of epoch %d before its reset (ours is %d); resuming from seq %d", br.Epoch, e, c.LastSeq()+1)}
			return
		}
		for br.Next() {
			it := &br.Item
			last := c.LastSeq()
			switch arbitrate(last, it.Seq) {
			case duplicate:
				ch.metrics.Duplicates.Inc()
				continue
			case gap:
				ch.metrics.Gaps.Inc()
				end = sessionEnd{now: true, err: fmt.Errorf("gap: got seq %d after %d; resuming from %d", it.Seq, last, last+1)}
				return
			}
			b := ch.open
			if b == nil {
				b = frames.GetBatch()
				b.ChildRecv = childRecv
				ch.open, ch.openLine = b, l
			}
			ch.stamps = append(ch.stamps, wire.Stamps{ExchSend: it.ExchSend, RootRecv: it.RootRecv,
				RootSend: br.RootSend, ChildRecv: childRecv})
			c.Apply(b, it, br.RootSend, childRecv)
			b.Last = it.Seq
			ch.openItems++
		}
		ch.bad = c.Bad()
	})
	if end.err != nil {
		ch.publishOpen()
		return end
	}
	if ch.open != nil && len(ch.open.Buf) >= frames.BatchBytes {
		ch.publishOpen()
	}
	if err := br.Err(); err != nil {
		return sessionEnd{err: fmt.Errorf("relay batch: %w", err)}
	}
	return sessionEnd{}
}

// publishOpen publishes the open batch, if any.
func (ch *Child) publishOpen() {
	b := ch.open
	if b == nil {
		return
	}
	bad := ch.bad
	ch.metrics.Items.Add(float64(ch.openItems))
	ch.openLine.items.Add(float64(ch.openItems))
	ch.open, ch.openItems = nil, 0
	if d := bad - ch.badSeen; d > 0 {
		ch.metrics.BadItems.Add(float64(d))
		ch.badSeen = bad
	}
	ch.metrics.LastSeq.Set(float64(ch.LastSeq()))
	// root->child in the root's time base: perf's offset is child minus root.
	l := ch.openLine
	ch.hops.RecordBatch(0, ch.stamps, 0, -l.offset.Load())
	ch.stamps = ch.stamps[:0]
	if ch.active.Swap(l) != l {
		ch.showClock(l)
	}
	ch.publish(b)
}

// reset follows a Reset frame from l's root: a later epoch than the core's
// starts (the first line to say so; the others' copies are dropped). The
// core starts over and a marker tells the loops, in order with the frames.
func (ch *Child) reset(r wire.Reset, l *line, log logger) {
	ch.publishOpen()
	var line wire.ResetLine
	ch.state.Write(func(c *frames.Core) {
		if r.Epoch <= c.Epoch() || r.Seq == 0 || r.Seq > wire.MaxSeq {
			return
		}
		// Where the epoch ended: as the root says, when it is the one the
		// core was in (the root had every item of it the core lacks).
		prevLast := c.LastSeq()
		switch {
		case c.Epoch() == 0 && c.OldestSeq() == 0:
			prevLast = 0 // nothing held before: the first epoch, told to no one
		case r.Prev == c.Epoch():
			prevLast = max(prevLast, r.PrevLast)
		}
		line = wire.ResetLine{Epoch: r.Epoch, Seq: r.Seq, Prev: c.Epoch(), PrevLast: prevLast}
		c.Reset(r.Epoch, r.Seq)
	})
	if line.Epoch == 0 {
		return
	}
	log.Info("new epoch", "root", l.addr, "epoch", line.Epoch, "seq", line.Seq, "prev_epoch", line.Prev, "prev_last_seq", line.PrevLast)
	ch.metrics.Epoch.Set(float64(line.Epoch))
	if !line.First() {
		ch.metrics.EpochChanges.Inc()
	}
	ch.metrics.LastSeq.Set(float64(line.Seq - 1))
	b := frames.GetBatch()
	b.Reset, b.Last, b.ChildRecv = &line, line.Seq-1, time.Now().UnixNano()
	ch.publish(b)
}

// publish hands b to the loops, noting its Last (a marker that follows
// carries it: it is no further on).
func (ch *Child) publish(b *frames.Batch) {
	ch.published.Store(b.Last)
	ch.srv.publish(b)
}

// relayError handles an Error frame from l's root.
func (ch *Child) relayError(e wire.RelayErr, l *line, log logger) sessionEnd {
	ch.metrics.RootErrors.WithLabelValues(l.addr, wire.RelayCodeName(e.Code)).Inc()
	last := ch.LastSeq()
	if e.Code == wire.CodeSeqGone || e.Code == wire.CodeSeqFuture { // e.Seq is a position
		if ep := ch.Epoch(); wire.PosEpoch(e.Seq) != ep {
			log.Warn("root error about another epoch; retrying", "code", wire.RelayCodeName(e.Code), "epoch", ep, "root_epoch", wire.PosEpoch(e.Seq), "reason", e.Reason)
			return sessionEnd{err: e}
		}
		e.Seq = wire.PosSeq(e.Seq)
	}
	switch e.Code {
	case wire.CodeSeqGone:
		if ok, retry := ch.arb.maySkip(l.i, time.Now()); e.Seq > last+1 && !ok {
			log.Warn("root no longer holds the seqs we need; another root's line is streaming them or may be back soon",
				"asked_from", last+1, "first_available", e.Seq, "reason", e.Reason)
			return sessionEnd{err: e, yield: true, held: retry > 0} // retried from the then last+1
		}
		if e.Seq > last+1 {
			lost := e.Seq - last - 1
			log.Error("root no longer holds the seqs we need: skipping them; clients will see a gap",
				"asked_from", last+1, "first_available", e.Seq, "lost", lost, "reason", e.Reason)
			ch.metrics.LostItems.Add(float64(lost))
			ch.state.Write(func(c *frames.Core) { c.Skip(e.Seq - 1) })
			return sessionEnd{now: true, progress: true, err: e}
		}
		return sessionEnd{err: e}
	case wire.CodeSeqFuture:
		if ch.arb.otherUp(l.i) { // this root is catching up while another line streams
			log.Warn("root is behind us; retrying while another root's line streams", "asked_from", last+1, "root_head", e.Seq)
			return sessionEnd{err: e, yield: true}
		}
		log.Error("root is behind us; retrying", "asked_from", last+1, "root_head", e.Seq, "reason", e.Reason)
		return sessionEnd{err: e}
	default:
		return sessionEnd{err: e}
	}
}
