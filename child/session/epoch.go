package session

import (
	"tickrelay/child/frames"
	"tickrelay/wire"
)

// Epochs. The exchange numbers its items from 1 again in each epoch (a
// trading day, a Sequence Reset). The child's core starts over with it
// (frames.Core.Reset) and publishes a marker (frames.Batch.Reset) in order
// with the frames. A loop reaching the marker writes out the last epoch's
// frames, tells each client RESET, and carries its subscriptions into the
// new epoch from its first seq. Between the core's reset and the marker
// the loop lags the core by an epoch: its queued frames are the old
// epoch's while the core's images and history are the new one's, so what
// reads the core for a client (SUB, RESUME, catch-ups, resyncs) waits for
// the marker.

// lagging reports whether the core is in a later epoch than the loop's
// frames.
func (l *Loop) lagging() bool { return l.src.Epoch() != l.epoch }

// deferredLine is a client's command line that waits for the loop to reach
// the core's epoch.
type deferredLine struct {
	cl   *Client
	line []byte
	recv int64
}

// Epoch is the epoch of the frames the loop delivers.
func (l *Loop) Epoch() uint32 { return l.epoch }

// reset carries every client into the epoch r starts, then runs the lines
// that waited for it.
func (l *Loop) reset(r *wire.ResetLine) {
	l.Flush() // the last epoch's frames first
	prev := l.epoch
	l.epoch = r.Epoch
	l.img.buf = nil
	// The child's first epoch (nothing held before it) is no news, and
	// changes no subscription: a SUB or RESUME taken before it meant the
	// current epoch, which this is.
	if r.First() {
		l.runDeferred()
		return
	}
	for cl := range l.clients {
		if cl.dead || cl.conn == nil {
			continue
		}
		if cl.behind {
			l.finishEpoch(cl, prev, r.PrevLast)
		}
		l.leaveBehind(cl)
		l.f.restart(cl, r.Seq-1)
		cl.out = wire.AppendResetLine(cl.out, *r)
		if !cl.stale { // a stale client's resync answers every subscription
			for _, sym := range cl.oks { // a SUB * still streaming: it levels here
				cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, r.Seq-1, r.Epoch)
			}
			cl.oks = cl.oks[:0]
		}
		l.writeOut(cl)
	}
	l.runDeferred()
}

// runDeferred runs the lines that waited for the loop to reach the core's
// epoch.
func (l *Loop) runDeferred() {
	waiting := l.deferred
	l.deferred = nil
	for _, d := range waiting {
		if !d.cl.dead {
			d.cl.out = d.cl.out[:0]
			l.command(d.cl, d.line, d.recv)
			l.writeOut(d.cl)
		}
	}
}

// finishEpoch writes cl, behind at a reset, what it is owed of epoch, which
// ended at last, as far as the history still holds it, whatever its
// socket takes (it is owed that much and no more), then the OKs of a
// SUB * stream that levels there. What the history no longer holds is
// lost; the RESET line that follows says where the epoch ended.
func (l *Loop) finishEpoch(cl *Client, epoch uint32, last uint64) {
	for len(cl.img) > 0 && cl.conn != nil {
		b := cl.img[:chunk(cl.img, writeChunk)]
		cl.img = cl.img[len(b):]
		l.writeOwed(cl, b)
	}
	want := func(seq, hash uint64, frame []byte) bool { return l.f.wants(cl, seq, hash, frame) }
	for cl.conn != nil {
		var ok, level bool
		out, next := l.f.out[:0], cl.behindFrom
		l.src.Read(func(c *frames.Core) {
			out, next, ok, level = c.AppendPrevWhere(out, epoch, next, l.cfg.Now(), writeChunk, want)
		})
		l.f.out = out
		if !ok {
			break
		}
		cl.behindFrom = next
		l.writeOwed(cl, out)
		if level {
			break
		}
	}
	for _, sym := range cl.oks {
		cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, last, epoch)
	}
	cl.oks = cl.oks[:0]
}
