package session

import (
	"log/slog"
	"strconv"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// tooSlow applies the slow-client policy once cl's unsent bytes passed
// MaxPending (plus its grace). Disconnect: it writes ERR SLOW (best
// effort: unsent bytes are discarded on close), marks cl dead and reports
// true; the caller closes it. Conflate: cl goes stale (no frames until
// Resync).
func (l *Loop) tooSlow(cl *Client) bool {
	if cl.dead || cl.conn == nil || cl.stale {
		return false
	}
	n := cl.conn.Buffered()
	if n <= l.cfg.MaxPending {
		cl.grace = 0
		return false
	}
	if n <= l.cfg.MaxPending+cl.grace {
		return false
	}
	now := l.cfg.Now()
	if l.cfg.Conflate {
		cl.stale, cl.staleAt = true, now
		l.stale = append(l.stale, cl)
		l.hasStale.Store(true)
		l.m.SlowConflated.Inc()
		l.warn.logf(now, slog.LevelInfo, "slow client conflated", "remote", cl.conn.RemoteAddr(), "pending", n)
		return false
	}
	l.dropSlow(cl, now, "unsent bytes "+strconv.Itoa(n)+" over limit "+strconv.Itoa(l.cfg.MaxPending))
	return true
}

// dropSlow writes ERR SLOW with reason to cl and marks it dead.
func (l *Loop) dropSlow(cl *Client, now int64, reason string) {
	l.m.SlowDisconnect.Inc()
	l.warn.logf(now, slog.LevelWarn, "disconnecting slow client", "remote", cl.conn.RemoteAddr(), "reason", reason)
	l.writeErr(cl, wire.ErrCodeSlow, reason)
}

// HasStale reports whether conflated clients wait for Resync; it may be
// called from any goroutine.
func (l *Loop) HasStale() bool { return l.hasStale.Load() }

// Resync runs after each drain's Flush under the conflate policy, and
// periodically while the loop has stale clients. A stale client whose
// backlog has gone down to MaxPending/4 gets ERR CONFLATED, then the images
// and OKs of its subscriptions (as for a SUB), then every update after P:
// the updates it missed are conflated into the images. One still behind
// after SlowTimeout is disconnected.
func (l *Loop) Resync() {
	if len(l.stale) == 0 {
		return
	}
	now := l.cfg.Now()
	stale := l.stale
	l.stale = nil // a resync's own write may make its client stale again
	keep := stale[:0]
	for _, cl := range stale {
		switch {
		case cl.dead || cl.conn == nil:
		case cl.conn.Buffered() <= l.cfg.MaxPending/4:
			cl.stale = false
			l.m.ClientErrors.WithLabelValues(wire.ErrCodeConflated).Inc()
			cl.out = wire.AppendErr(cl.out[:0], wire.ErrCodeConflated, "updates skipped while behind; the images and OK SUB of your subscriptions follow")
			// Every image once when on "*": the symbols' own OKs follow it.
			l.atSnapshot(cl, cl.all, now, func(c *frames.Core, p uint64) {
				if cl.all {
					l.subscribeAt(c, cl, 0, []byte(wire.AllSymbols), true, false, p, now)
				}
				for h, sym := range cl.subs {
					l.subscribeAt(c, cl, h, sym, false, !cl.all, p, now)
				}
			})
			l.m.SlowResynced.Inc()
			l.writeOut(cl)
			if cl.dead {
				l.closeNow(cl)
			}
		case now-cl.staleAt > int64(l.cfg.SlowTimeout):
			l.dropSlow(cl, now, "behind for over "+l.cfg.SlowTimeout.String())
			l.closeNow(cl)
		default:
			keep = append(keep, cl)
		}
	}
	clear(stale[len(keep):])
	l.stale = append(keep, l.stale...)
	l.hasStale.Store(len(l.stale) > 0)
}
