package child

import (
	"slices"
	"time"
)

// Arbitration of relay lines. A child may take the same exchange feed from
// several roots (an A/B pair): one relay line each. Every line carries the
// exchange's own seqs, so the lines agree on what seq N is and arbitration
// is by seq alone: the first line to deliver the next seq has it applied,
// later copies are duplicates. Each line is contiguous from the seq it asked
// for (last applied + 1 when it connected) and last only grows, so a line
// never skips ahead of last+1 unless its root broke the protocol (a gap:
// that line reconnects). A line that is down, slow or catching up costs
// nothing but its duplicates; the others carry the feed.
//
// When a root no longer holds the next seq (SeqGone), a lone line has to
// skip to what the root still holds, and clients see a gap. With several
// lines the seqs may still come from another: a line skips only when no
// other line is streaming; otherwise it retries later, as does a line whose
// root is behind (SeqFuture). Such retries back off, but not past the end
// of the line they yield to: when the last streaming line goes down, every
// line waiting to retry tries at once (wake), so a failover never waits
// out a backoff. A line that just went down may be back in a moment with
// the seqs, so for its next session (at most a grace) no line skips them.

// verdict is what to do with an arriving item.
type verdict uint8

const (
	apply     verdict = iota // seq == last+1: the next item
	duplicate                // seq <= last: another line (or a resend) had it first
	gap                      // seq > last+1: the line skipped seqs
)

// arbitrate judges an item of seq against the last seq applied.
func arbitrate(last, seq uint64) verdict {
	switch {
	case seq <= last:
		return duplicate
	case seq == last+1:
		return apply
	default:
		return gap
	}
}

// arbiter tracks which relay lines are streaming. It is a pure type: the
// caller serializes access (Child.relayMu) and passes the time.
type arbiter struct {
	up     []bool        // line i has a session that delivered frames
	rejoin []time.Time   // when line i went down, while its next session may still bring it back
	grace  time.Duration // the longest a rejoin may hold others back
	wake   chan struct{} // closed (and replaced) when lines waiting on others should retry now
}

func newArbiter(lines int, grace time.Duration) *arbiter {
	return &arbiter{up: make([]bool, lines), rejoin: make([]time.Time, lines), grace: grace, wake: make(chan struct{})}
}

// streaming records that line i is streaming: a frame of the feed (a
// batch, items) or a heartbeat arrived on it. Only items end a rejoin: a
// root that heartbeats and hangs up, again and again, must not hold the
// other lines back past one grace.
func (a *arbiter) streaming(i int, items bool) {
	a.up[i] = true
	if items {
		a.rejoin[i] = time.Time{}
	}
}

// ended records that a session of line i ended at now and reports whether
// the line was streaming in it. A line that was streaming is rejoining
// until it delivers items again or a session of it ends without streaming:
// a drop is often brief, and until then (for at most the grace from the
// first drop) another line may not skip the seqs it would have delivered.
// The waiting lines wake when the last streaming line goes down and when
// the last hope of one coming back fails.
func (a *arbiter) ended(i int, now time.Time) (streamed bool) {
	streamed, rejoining := a.up[i], !a.rejoin[i].IsZero()
	a.up[i] = false
	switch {
	case streamed && !rejoining:
		a.rejoin[i] = now
	case !streamed:
		a.rejoin[i] = time.Time{}
	}
	if (streamed || rejoining) && !a.anyUp() {
		close(a.wake)
		a.wake = make(chan struct{})
	}
	return streamed
}

// anyUp reports whether some line is streaming.
func (a *arbiter) anyUp() bool { return slices.Contains(a.up, true) }

// isUp reports whether line i is streaming.
func (a *arbiter) isUp(i int) bool { return a.up[i] }

// maySkip reports whether line i, whose root no longer holds the next seq,
// may skip to what it holds: only when no other line is streaming or
// rejoining (one might still deliver the seqs). If a line is rejoining,
// retry is how long it may still hold line i back.
func (a *arbiter) maySkip(i int, now time.Time) (ok bool, retry time.Duration) {
	if a.otherUp(i) {
		return false, 0
	}
	for j, t := range a.rejoin {
		if j != i && !t.IsZero() {
			retry = max(retry, t.Add(a.grace).Sub(now))
		}
	}
	return retry <= 0, max(retry, 0)
}

// otherUp reports whether a line other than i is streaming.
func (a *arbiter) otherUp(i int) bool {
	for j, up := range a.up {
		if j != i && up {
			return true
		}
	}
	return false
}
