package session

import (
	"bytes"
	"math"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// A client whose socket stops taking bytes is not written again until it
// has taken what its connection already holds. Its frames are not copied
// into the connection's buffer meanwhile: it falls behind at the seq of the
// first frame it did not get, the fan-out only adds up the bytes it is owed
// (its backlog, checked against MaxPending at every flush), and once its
// socket drains it catches up from the child's history, which every client
// shares. A stalled client so costs one addition per frame and holds at
// most a write chunk or two in its connection, however many there are;
// only a reply it asked for (an image, a history) may be larger, within
// its grace.

// writeChunk is the most bytes handed to a connection in one Write while
// it takes them: what a socket refuses stays in the connection (gnet's
// buffer), so this bounds that, and a cut client's last ERR line follows
// whole frames.
const writeChunk = 256 << 10

// send writes out (whole frames in seq order) to cl in chunks while its
// socket takes them; if it stops taking them, cl falls behind at the first
// frame not written. It returns the bytes written, the writes, and the
// connection's unsent bytes after the last write.
func (l *Loop) send(cl *Client, out []byte) (n, writes, unsent int) {
	if cl.full { // its socket refused bytes last time: taken since?
		if unsent = l.unsent(cl); unsent > 0 {
			l.fallBehind(cl, out)
			return 0, 0, unsent
		}
	}
	for len(out) > 0 && cl.conn != nil {
		k := chunk(out, writeChunk)
		cl.conn.Write(out[:k])
		n, writes, out = n+k, writes+1, out[k:]
		if cl.conn == nil { // a write error closed it
			return n, writes, 0
		}
		if unsent = l.unsent(cl); unsent > 0 && len(out) > 0 {
			l.fallBehind(cl, out)
			return n, writes, unsent
		}
	}
	return n, writes, unsent
}

// chunk is the length of b's first write chunk: all of it, or the whole
// frames within max bytes (at least one frame).
func chunk(b []byte, max int) int {
	if len(b) <= max {
		return len(b)
	}
	if k := bytes.LastIndexByte(b[:max], '\n') + 1; k > 0 {
		return k
	}
	return bytes.IndexByte(b, '\n') + 1
}

// unsent is the count of bytes cl's connection holds unsent; it notes
// whether there are any (Client.full) for the next send.
func (l *Loop) unsent(cl *Client) int {
	n := cl.conn.Buffered()
	cl.full = n > 0
	return n
}

// fallBehind makes cl owe out (whole frames) and every frame due after it.
func (l *Loop) fallBehind(cl *Client, out []byte) {
	seq, _ := wire.TextFrameSeq(out)
	l.owe(cl, seq, len(out))
}

// owe puts cl behind: it is owed every frame due from seq from on, backlog
// bytes of them counted so far; the passes over the clients behind catch
// it up.
func (l *Loop) owe(cl *Client, from uint64, backlog int) {
	cl.behind, cl.behindFrom, cl.backlog = true, from, backlog
	l.behind = append(l.behind, cl)
	l.m.Behind.Inc()
}

// sendOKs ends a streamed SUB * answer at p: its symbols' OK SUB lines.
func (l *Loop) sendOKs(cl *Client, p uint64) {
	if len(cl.oks) == 0 {
		return
	}
	for _, sym := range cl.oks {
		cl.out = wire.AppendOK(cl.out, wire.CmdSub, sym, p, l.epoch)
	}
	cl.oks = cl.oks[:0]
	l.writeOut(cl)
}

// leaveBehind forgets that cl is behind (caught up, cut, conflated or closed).
func (l *Loop) leaveBehind(cl *Client) {
	if cl.behind {
		cl.behind, cl.backlog, cl.img = false, 0, nil
		l.m.Behind.Dec()
	}
}

// catchUpBudget is about the most bytes one pass over the clients behind
// writes (a few tens of µs of copies): catch-ups, and the SUB * streams of a
// thousand clients that connect at once, are spread over the drains, so
// the clients that keep up wait for no more than this between them.
const catchUpBudget = 64 << 10

// passBehind, after each flush and on the ticker: each client behind is
// cut or conflated once its backlog passes the limit, and those whose
// sockets have drained catch up, within catchUpBudget, taking turns
// across passes.
func (l *Loop) passBehind() {
	n := len(l.behind)
	if n == 0 || l.lagging() {
		return
	}
	budget, start := catchUpBudget, l.behindNext%n
	for i := range n {
		cl := l.behind[(start+i)%n]
		if !cl.behind {
			continue
		}
		if unsent := l.unsent(cl); l.checkSlow(cl, unsent) || unsent > 0 || budget <= 0 {
			continue
		}
		if budget -= l.catchUp(cl, budget); budget <= 0 {
			l.behindNext = start + i + 1
		}
	}
	keep := l.behind[:0]
	for _, cl := range l.behind {
		if cl.behind {
			keep = append(keep, cl)
		}
	}
	clear(l.behind[len(keep):])
	l.behind = keep
}

// writeOwed writes frames cl is owed.
func (l *Loop) writeOwed(cl *Client, b []byte) {
	if len(b) == 0 || cl.conn == nil {
		return
	}
	cl.conn.Write(b)
	l.m.BytesOut.Add(float64(len(b)))
	l.m.Writes.Inc()
}

// catchUp writes cl the frames it is owed (a SUB * image first, then the
// history), a write chunk at a time, until it is level (its subscriptions
// then go on after the history's LastSeq), its socket stops taking them,
// or it has written limit bytes (math.MaxInt: until level, whatever its
// socket takes); it returns the bytes written. A client
// owed frames the history no longer holds is too slow.
func (l *Loop) catchUp(cl *Client, limit int) (written int) {
	whole := limit == math.MaxInt  // level it whatever its socket takes
	write := func(b []byte) bool { // false: stop here
		l.writeOwed(cl, b)
		written += len(b)
		return cl.conn != nil && written < limit && (whole || l.unsent(cl) == 0)
	}
	// Each write is whole frames within what the limit leaves: a pass
	// costs its budget, not a write chunk on top (nor, for the history, a
	// chunk's copy in the hold of the core the relay writes to).
	left := func() int { return max(min(writeChunk, limit-written), 1) }
	for len(cl.img) > 0 && cl.conn != nil {
		b := cl.img[:chunk(cl.img, left())]
		if cl.img = cl.img[len(b):]; len(cl.img) == 0 {
			cl.img = nil
		}
		if !write(b) {
			return written
		}
	}
	want := func(seq, hash uint64, frame []byte) bool { return l.f.wants(cl, seq, hash, frame) }
	for cl.behind && cl.conn != nil {
		var ok, level bool
		var p, oldest uint64
		var now int64
		out, next := l.f.out[:0], cl.behindFrom
		l.src.Read(func(c *frames.Core) {
			now = l.cfg.Now() // in the hold: after every frame it may copy arrived
			out, next, ok = c.AppendHistoryWhere(out, next, now, resumePart, left(), want)
			p, oldest, level = c.LastSeq(), c.OldestSeq(), next > c.LastSeq()
		})
		l.f.out = out
		if !ok {
			l.tooFarBehind(cl, now, oldest)
			return written
		}
		cl.behindFrom, cl.backlog = next, max(cl.backlog-len(out), 0)
		more := len(out) == 0 || write(out)
		if level {
			l.f.rearm(cl, p)
			l.leaveBehind(cl)
			l.sendOKs(cl, p)
			return written
		}
		if !more {
			return written
		}
	}
	return written
}
