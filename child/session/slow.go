package session

import (
	"log/slog"
	"strconv"
	"time"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// checkSlow applies the slow-client policy once cl's unsent bytes (those
// its connection holds, unsent, plus its backlog) pass MaxPending plus its
// grace, and reports whether it did. Disconnect: cl is cut (cut). Conflate:
// cl goes stale (no frames until Resync).
func (l *Loop) checkSlow(cl *Client, unsent int) bool {
	if cl.dead || cl.conn == nil || cl.stale {
		return false
	}
	n := unsent + cl.backlog
	if n <= l.cfg.MaxPending {
		cl.grace = 0
		return false
	}
	if n <= l.cfg.MaxPending+cl.grace {
		return false
	}
	now := l.cfg.Now()
	if l.cfg.Conflate {
		l.conflate(cl, now, n)
		return true
	}
	l.cut(cl, now, "unsent bytes "+strconv.Itoa(n)+" over limit "+strconv.Itoa(l.cfg.MaxPending))
	return true
}

// conflate stops sending cl frames until Resync catches it up with images.
func (l *Loop) conflate(cl *Client, now int64, unsent int) {
	l.leaveBehind(cl)
	cl.oks = cl.oks[:0] // its resync answers every subscription
	cl.stale, cl.staleAt, cl.queued = true, now, -1
	l.f.park(cl)
	l.stale = append(l.stale, cl)
	l.m.SlowConflated.Inc()
	l.warn.logf(now, slog.LevelInfo, "slow client conflated", "remote", cl.conn.RemoteAddr(), "pending", unsent)
}

// tooFarBehind: cl is owed frames older than the history holds.
func (l *Loop) tooFarBehind(cl *Client, now int64, oldest uint64) {
	if l.cfg.Conflate {
		l.conflate(cl, now, cl.backlog)
		return
	}
	l.cut(cl, now, "behind seq "+strconv.FormatUint(cl.behindFrom, 10)+", older than the history holds ("+strconv.FormatUint(oldest, 10)+")")
}

// cut disconnects a slow client: its subscriptions end at once, ERR SLOW
// with reason goes after the whole frames its connection holds, and the
// lingering pass closes it once its socket has taken them, or after
// SlowLinger: a client that reads again soon gets complete frames and a
// complete last line.
func (l *Loop) cut(cl *Client, now int64, reason string) {
	l.m.SlowDisconnect.Inc()
	l.warn.logf(now, slog.LevelWarn, "disconnecting slow client", "remote", cl.conn.RemoteAddr(), "reason", reason)
	l.leaveBehind(cl)
	l.f.remove(cl)
	l.leaveGroups(cl)
	l.writeErr(cl, wire.ErrCodeSlow, reason)
	if cl.conn != nil {
		cl.lingerUntil = now + int64(l.cfg.SlowLinger)
		l.lingering = append(l.lingering, cl)
	}
}

// closesPerPass bounds the cut clients one lingering pass closes: each
// close is a few syscalls and frees the connection's buffers, so a
// thousand cut at once close over a few flushes instead of in one stall.
const closesPerPass = 16

// passLingering closes the cut clients whose sockets took their last line,
// or whose SlowLinger is over, at most closesPerPass of them.
func (l *Loop) passLingering() {
	if len(l.lingering) == 0 {
		return
	}
	now := l.cfg.Now()
	keep, closed := l.lingering[:0], 0
	for _, cl := range l.lingering {
		if cl.conn == nil {
			continue
		}
		if closed < closesPerPass && (now >= cl.lingerUntil || cl.conn.Buffered() == 0) {
			l.closeNow(cl)
			closed++
			continue
		}
		keep = append(keep, cl)
	}
	clear(l.lingering[len(keep):])
	l.lingering = keep
}

// Resync runs after each drain's Flush under the conflate policy, and
// periodically while the loop has stale clients. A stale client whose
// socket has taken all its connection held, and whose kernel send queue is
// low (it reads again), gets ERR CONFLATED, then what a SUB of its
// subscriptions answers (streamed for "*", as subAll does), then every
// update after it: the updates it missed are conflated into the images.
// One not reading again within SlowTimeout is disconnected.
func (l *Loop) Resync() {
	if len(l.stale) == 0 || l.lagging() {
		return
	}
	now := l.cfg.Now()
	if now < l.resyncAt { // a drain every few µs at speed: a scan per drain cost more than the fan-out
		return
	}
	l.resyncAt = now + resyncScan
	stale := l.stale
	l.stale = nil // a resync's own write may make its client stale again
	keep := stale[:0]
	for _, cl := range stale {
		switch {
		case cl.dead || cl.conn == nil:
		case l.readsAgain(cl, now):
			l.resync(cl, now)
		case now-cl.staleAt > int64(l.cfg.SlowTimeout):
			cl.stale = false
			l.cut(cl, now, "behind for over "+l.cfg.SlowTimeout.String())
		default:
			keep = append(keep, cl)
		}
	}
	clear(stale[len(keep):])
	l.stale = append(keep, l.stale...)
	l.noteBusy()
}

// resyncQueued is the most bytes a stale client's kernel send queue may
// hold for it to be resynced; resyncPoll is how often it is asked. A
// client that never reads has its connection drained into the kernel and
// no further: resynced then, it would only fill its socket again, at the
// cost of an image per cycle. So the queue must be empty, or have shrunk
// by resyncDrained since the last poll (the peer reads; a peer that does
// not still takes a few bytes now and then, as its kernel compacts its
// receive queue): a socket whose send buffer is smaller than resyncQueued
// is not taken for a reader. Asking costs a syscall, so once per poll.
// resyncScan is how often the stale clients are looked at.
const (
	resyncQueued  = 64 << 10
	resyncDrained = 16 << 10
	resyncPoll    = int64(250 * time.Millisecond)
	resyncScan    = int64(5 * time.Millisecond)
)

// readsAgain reports whether stale cl has taken what its connection held
// and its kernel queue is empty, or drains and is below resyncQueued.
func (l *Loop) readsAgain(cl *Client, now int64) bool {
	if l.unsent(cl) > 0 || now < cl.pollAt {
		return false
	}
	q := cl.conn.Queued()
	if q == 0 || q <= resyncQueued && cl.queued-q >= resyncDrained {
		return true
	}
	cl.queued, cl.pollAt = q, now+resyncPoll
	return false
}

// resync answers every subscription of stale cl again, after ERR CONFLATED.
func (l *Loop) resync(cl *Client, now int64) {
	cl.stale = false
	l.m.SlowResynced.Inc()
	l.m.ClientErrors.WithLabelValues(wire.ErrCodeConflated).Inc()
	cl.out = wire.AppendErr(cl.out[:0], wire.ErrCodeConflated, "updates skipped while behind; the images and OK SUB of your subscriptions follow")
	if !cl.all {
		l.src.Read(func(c *frames.Core) {
			p := c.LastSeq()
			for h, sym := range cl.subs {
				l.subscribeAt(c, cl, h, sym, true, p, now)
			}
		})
		l.writeOut(cl)
		return
	}
	// On "*": the shared image and the history after it, as for SUB *,
	// then the OKs of "*" and of its named symbols where it levels.
	l.writeOut(cl)
	if cl.dead {
		return
	}
	img, p0 := l.allImage()
	if !cl.grant.Everything() {
		img = cl.grant.FilterFrames(nil, img)
	}
	l.f.restart(cl, p0)
	cl.oks = append(cl.oks[:0], []byte(wire.AllSymbols))
	for _, sym := range cl.subs {
		cl.oks = append(cl.oks, sym)
	}
	l.stream(cl, img, p0)
}
