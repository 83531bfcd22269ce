package session

import "tickrelay/wire"

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
	l.epoch = r.Epoch
	l.img.buf = nil
	// The child's first epoch (nothing held before it) is no news.
	tell := r.Prev != 0 || r.PrevLast != 0
	for cl := range l.clients {
		if cl.dead || cl.conn == nil {
			continue
		}
		// What it was owed of the last epoch is gone with the history;
		// the RESET line says where that epoch ended.
		l.leaveBehind(cl)
		l.f.restart(cl, r.Seq-1)
		if tell {
			cl.out = wire.AppendResetLine(cl.out, *r)
		}
		if !cl.stale { // a stale client's resync answers every subscription
			for _, sym := range cl.oks { // a SUB * still streaming: it levels here
				cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, r.Seq-1, r.Epoch)
			}
			cl.oks = cl.oks[:0]
		}
		l.writeOut(cl)
	}
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
