package root

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"tickrelay/alert"
	"tickrelay/control"
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
	serial0 := c.seq.Serial()
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
	if n > 0 {
		rl.journalAlerts(serial0)
	}
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

// ControlStore is a Store that journals control records with the feed
// (the bbolt journal): the alert engine's state survives a restart.
type ControlStore interface {
	AppendControl(rec []byte) error
	LoadControl(fn func(rec []byte, snapshot bool) error) (through uint64, n int, err error)
	CompactControl(snapshot [][]byte, through uint64) error
}

// journalAlerts appends the alert records after serial (with c.mu held)
// to the journal, in sequence order.
func (rl *relay) journalAlerts(after uint64) {
	cs, ok := rl.r.cfg.Store.(ControlStore)
	if !ok {
		return
	}
	c := rl.ctl
	recs, _ := c.seq.Since(c.seq.Era(), after)
	for _, r := range recs {
		if !r.Op.Kind.IsAlert() {
			continue
		}
		b, err := control.AppendRecord(c.jbuf[:0], r)
		if err == nil {
			c.jbuf = b
			err = cs.AppendControl(b)
		}
		if err != nil {
			rl.r.m.StoreErrors.Inc()
			rl.r.log.Error("journal an alert record", "serial", r.Serial, "err", err)
		}
	}
}

// restoreAlerts rebuilds the engine from the journal at start: the
// records folded in order, then the items after the last whose records
// were all committed matched again (their fires may not have been), and
// the records compacted into a snapshot once they are mostly history.
func (r *Root) restoreAlerts() error {
	cs, ok := r.cfg.Store.(ControlStore)
	if !ok {
		return nil
	}
	c := r.relay.ctl
	set := c.seq.Alerts()
	through, n, err := cs.LoadControl(func(rec []byte, snapshot bool) error {
		r, err := control.ParseRecord(rec)
		if err != nil {
			return err
		}
		if snapshot {
			return control.LoadAlert(set, r)
		}
		return control.ApplyAlert(set, r)
	})
	if err != nil {
		return fmt.Errorf("root: restore alerts: %w", err)
	}
	if n == 0 {
		return nil
	}
	if kept := set.Len() + set.Owners()*control.FiresKept; n > 2*kept+1024 {
		var snap [][]byte
		add := func(r control.Record) {
			if b, err := control.AppendRecord(nil, r); err == nil {
				snap = append(snap, b)
			}
		}
		set.Each(func(d alert.Def, armed bool) {
			add(control.Record{After: d.After, Op: control.Op{Kind: control.KindAlert, Alert: d, Armed: armed}})
		})
		set.EachFired(func(owner string, f alert.Fired) {
			add(control.Record{After: f.Pos, Op: control.Op{Kind: control.KindFired, Alert: alert.Def{Owner: owner, ID: f.ID}, Fired: f}})
		})
		if err := cs.CompactControl(snap, through); err != nil {
			return fmt.Errorf("root: compact the journal's alert records: %w", err)
		}
		r.log.Info("alert records compacted", "records", n, "snapshot", len(snap))
	}
	c.standing.Store(int64(set.Len()))
	r.m.AlertsStanding.Set(float64(set.Len()))
	again := 0
	if last := r.cfg.Store.LastSeq(); through < last {
		var h wire.FeedHeader
		err = r.cfg.Store.Range(through+1, func(pos uint64, item []byte) bool {
			if len(item) < 10 { // rootRecv u64, bodyLen u16, body (wire.AppendRelayItem)
				return true
			}
			body := item[10:]
			if h, err = wire.ParseFeedBody(body); err == nil {
				r.relay.matchAlerts(pos, body, h.SendTime)
				again++
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("root: match the journal's last items again: %w", err)
		}
	}
	r.log.Info("alerts restored from the journal", "standing", set.Len(), "records", n, "through", wire.PosSeq(through), "matched_again", again)
	return nil
}
