package child

import "slices"

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
// line waiting to retry tries at once (allDown), so a failover never waits
// out a backoff.

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
// caller serializes access (Child.relayMu).
type arbiter struct {
	up      []bool        // line i has a session that delivered frames
	allDown chan struct{} // closed (and replaced) when the last up line goes down
}

func newArbiter(lines int) *arbiter {
	return &arbiter{up: make([]bool, lines), allDown: make(chan struct{})}
}

// setUp records whether line i is streaming.
func (a *arbiter) setUp(i int, up bool) {
	was := a.up[i]
	a.up[i] = up
	if was && !up && !a.anyUp() {
		close(a.allDown)
		a.allDown = make(chan struct{})
	}
}

// anyUp reports whether some line is streaming.
func (a *arbiter) anyUp() bool { return slices.Contains(a.up, true) }

// isUp reports whether line i is streaming.
func (a *arbiter) isUp(i int) bool { return a.up[i] }

// maySkip reports whether line i, whose root no longer holds the next seq,
// may skip to what it holds: only when no other line is streaming (one
// might still deliver the seqs).
func (a *arbiter) maySkip(i int) bool { return !a.otherUp(i) }

// otherUp reports whether a line other than i is streaming.
func (a *arbiter) otherUp(i int) bool {
	for j, up := range a.up {
		if j != i && up {
			return true
		}
	}
	return false
}
