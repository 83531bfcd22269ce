package root

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strconv"
	"time"

	"tickrelay/alert"
	"tickrelay/wire"
)

// The alert engine (package alert) runs here, on the feed session's
// goroutine, on each item right after the ring takes it: its fires and
// re-arms are sequenced after that item before the next one is in the
// ring, so every child gets them between the same two items, and a child
// (or a client) coming back needs the engine's state, never the feed since
// the oldest alert. An update of a field is a trade (last), a nominal
// price, or a level-1 entry of an aggregate book (bid, ask).
type alertEngine struct {
	msg wire.Msg
	// Sampled match times: timing each update would cost more than the
	// match.
	n int
}

// alertTopN is how many identities the alerts-per-identity gauge shows.
const alertTopN = 10

// matchAlerts runs the engine on the item at pos.
func (rl *relay) matchAlerts(pos uint64, body []byte, sendTime int64) {
	c := rl.ctl
	if c.standing.Load() == 0 || len(body) < wire.MinFeedBody+4 {
		return
	}
	switch binary.LittleEndian.Uint16(body[18:]) {
	case wire.TypeTrade, wire.TypeNominalPrice, wire.TypeAggregateBook:
	default:
		return
	}
	e := &c.engine
	m := &e.msg
	if _, err := wire.DecodeMsg(body, m); err != nil {
		return // the ring took it: the session validated it
	}
	var t0 time.Time
	if e.n++; e.n&15 == 0 {
		t0 = time.Now()
	}
	c.mu.Lock()
	fired, n := 0, 0
	match := func(f alert.Field, price int32) {
		x, y := c.seq.Match(m.Security, f, price, pos, sendTime)
		fired, n = fired+x, n+x+y
	}
	switch m.Type {
	case wire.TypeTrade:
		match(alert.Last, m.Price)
	case wire.TypeNominalPrice:
		match(alert.Nominal, m.Price)
	case wire.TypeAggregateBook:
		for i := range int(m.NumEntries) {
			en := &m.Entries[i]
			if en.Level != 1 || en.Action > 1 || en.Side > 1 || en.Price <= 0 {
				continue
			}
			f := alert.Bid
			if en.Side == 1 {
				f = alert.Ask
			}
			match(f, en.Price)
		}
	}
	standing, serial := c.seq.Alerts().Len(), c.seq.Serial()
	c.mu.Unlock()
	if !t0.IsZero() {
		rl.r.m.AlertMatch.Observe(time.Since(t0).Seconds())
	}
	if n > 0 {
		rl.r.m.AlertFires.Add(float64(fired))
		c.standing.Store(int64(standing))
		rl.r.m.AlertsStanding.Set(float64(standing))
		rl.sequenced(n, serial)
	}
}

// alertOwnersEvery is how often the alerts-per-identity gauge is redone.
const alertOwnersEvery = 5 * time.Second

// showAlertOwners sets the alerts-per-identity gauge to the top holders.
func (rl *relay) showAlertOwners() {
	type held struct {
		owner string
		n     int
	}
	var top []held
	c := rl.ctl
	c.mu.RLock()
	c.seq.Alerts().EachOwner(func(owner string, n int) {
		if n > 0 {
			top = append(top, held{owner, n})
		}
	})
	c.mu.RUnlock()
	slices.SortFunc(top, func(a, b held) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.owner, b.owner)) })
	g := rl.r.m.AlertOwners
	g.Reset()
	for i, h := range top[:min(len(top), alertTopN)] {
		g.WithLabelValues(strconv.Itoa(i+1), h.owner).Set(float64(h.n))
	}
}
