package child

// ClockSample is one NTP-style exchange with the root: t0 child send, t1
// root receive, t2 root send, t3 child receive (ns, each on its host's clock).
type ClockSample struct {
	Offset int64 // root clock minus child clock
	RTT    int64 // round trip minus the root's processing time
}

// Clock estimates the root's clock offset from TimeReq/TimeReply exchanges.
// It keeps the last Window samples and trusts the one with the smallest
// round trip (the least queueing); its error bound is RTT/2. It is a pure
// type: no clock of its own, no locking.
type Clock struct {
	win  []ClockSample
	n, i int
}

// NewClock returns an estimator over the last window samples (min 1).
func NewClock(window int) *Clock {
	return &Clock{win: make([]ClockSample, max(window, 1))}
}

// Add records the exchange (t0, t1, t2, t3); it rejects impossible stamps
// (a negative round trip) and returns the sample and whether it was kept.
func (c *Clock) Add(t0, t1, t2, t3 int64) (ClockSample, bool) {
	s := ClockSample{
		Offset: ((t1 - t0) + (t2 - t3)) / 2,
		RTT:    (t3 - t0) - (t2 - t1),
	}
	if s.RTT < 0 || t3 < t0 || t2 < t1 {
		return s, false
	}
	c.win[c.i] = s
	c.i = (c.i + 1) % len(c.win)
	c.n = min(c.n+1, len(c.win))
	return s, true
}

// Estimate returns the offset (root minus child, ns) of the best sample in
// the window and its error bound (RTT/2); ok is false before any sample.
func (c *Clock) Estimate() (offset, bound int64, ok bool) {
	if c.n == 0 {
		return 0, 0, false
	}
	best := c.win[0]
	for _, s := range c.win[1:c.n] {
		if s.RTT < best.RTT {
			best = s
		}
	}
	return best.Offset, best.RTT / 2, true
}
