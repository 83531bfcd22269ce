package root

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/control"
	"tickrelay/wire"
)

// The root's control stream (package control): children submit ops on
// their relay lines (ControlReq); the sequencer numbers each and places
// it after the ring's head; every child's drain sends each record right
// after the items up to its After, before any later one, so every child
// applies it between the same two items. A child that reconnects says
// what it has applied (ControlSync) and gets the records since, in place;
// a new child gets every record from the first while the root keeps them
// all; one that cannot (a new era: the root restarted; records no longer
// kept) gets a snapshot of the live members first. A child catching up from the
// journal gets the records it missed once it reaches the ring, each
// before the next batch: such a child is far behind and holds no members.
//
// A record's place and the drains must not race: a drain that checked for
// records before one was sequenced must not then send items past its
// place. So the sequencer reads the ring's head under mu, and a drain
// reads the head and checks for its next record under the same mu (read
// locked), then sends no further than that head.
type ctlState struct {
	mu  sync.RWMutex
	seq *control.Sequencer
	// standing mirrors the engine's alert count, so items skip the engine
	// (and mu) while none stand.
	standing atomic.Int64
	engine   alertEngine // the feed session's (alerts.go)
	jbuf     []byte      // scratch: a record being journaled (under mu)
}

// controlsKept is how many records the root keeps for children that
// reconnect.
const controlsKept = 4096

func newCtlState(linger time.Duration) *ctlState {
	s := control.NewSequencer(uint64(time.Now().UnixNano()), controlsKept)
	s.Linger = int64(linger)
	return &ctlState{seq: s}
}

// submitControl sequences a child's op.
func (rl *relay) submitControl(ch *child, p []byte) {
	op, err := control.ParseOp(p)
	var r control.Record
	if err == nil {
		c := rl.ctl
		c.mu.Lock()
		serial0 := c.seq.Serial()
		var sequenced bool
		r, sequenced, err = c.seq.Submit(ch.line, op, rl.r.ring.Head(), time.Now().UnixNano())
		if err == nil && !sequenced { // a member's place held for it
			c.mu.Unlock()
			return
		}
		if err == nil && op.Kind.IsAlert() {
			rl.journalAlerts(serial0)
		}
		c.standing.Store(int64(c.seq.Alerts().Len()))
		c.mu.Unlock()
		rl.r.m.AlertsStanding.Set(float64(c.standing.Load()))
	}
	if errors.Is(err, control.ErrStale) {
		ch.log.Debug("control op stale", "err", err)
		return
	}
	if err != nil {
		rl.r.m.ControlRefused.Inc()
		ch.log.Warn("control op refused", "err", err)
		return
	}
	rl.sequenced(1, r.Serial)
}

// controlLineDown sequences the leaves of ch's members.
func (rl *relay) controlLineDown(ch *child) {
	c := rl.ctl
	c.mu.Lock()
	recs := c.seq.LineDown(ch.line, rl.r.ring.Head(), time.Now().UnixNano())
	c.mu.Unlock()
	if len(recs) > 0 {
		rl.sequenced(len(recs), recs[len(recs)-1].Serial)
	}
}

// expireHeld sequences the leaves of members whose held places expired.
func (rl *relay) expireHeld() {
	c := rl.ctl
	c.mu.Lock()
	recs := c.seq.Expire(rl.r.ring.Head(), time.Now().UnixNano())
	held := c.seq.Held()
	c.mu.Unlock()
	rl.r.m.GroupHeld.Set(float64(held))
	if len(recs) > 0 {
		rl.sequenced(len(recs), recs[len(recs)-1].Serial)
	}
}

func (rl *relay) sequenced(n int, serial uint64) {
	rl.r.m.Controls.Add(float64(n))
	rl.r.m.ControlSerial.Set(float64(serial))
	rl.signalAll()
}

// startControls, at ch's hello, decides where its control stream starts:
// after what it said it applied, or from a snapshot written now.
func (rl *relay) startControls(ch *child) bool {
	c := rl.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch.ctlEra == 0 && ch.ctlSerial == 0 { // fresh: the records from the first, while all are kept
		ch.ctlEra = c.seq.Era()
	}
	if _, _, snap := c.seq.Next(ch.ctlEra, ch.ctlSerial); !snap {
		return true
	}
	err := c.seq.SnapshotParts(snapshotPart, func(part []byte) error {
		if !ch.write(wire.AppendRelayFrame(ch.l.scratch[:0], wire.RelayControlSnapshot, part)) {
			return errSnapshotWrite
		}
		return nil
	})
	if err != nil {
		ch.log.Warn("control snapshot", "err", err)
		return false
	}
	ch.ctlEra, ch.ctlSerial = c.seq.Era(), c.seq.Serial()
	return true
}

// snapshotPart is the size of a control snapshot's parts (a relay frame
// holds wire.MaxRelayFrame).
const snapshotPart = 1 << 20

var errSnapshotWrite = errors.New("root: control snapshot not written")

// nextControl returns the next record ch is due, if any, and the ring's
// head as of that answer: the drain sends no item past it (nor past the
// record's place). It does not allocate.
func (rl *relay) nextControl(ch *child) (r control.Record, ok bool, head uint64) {
	c := rl.ctl
	c.mu.RLock()
	head = rl.r.ring.Head()
	r, ok, snap := c.seq.Next(ch.ctlEra, ch.ctlSerial)
	c.mu.RUnlock()
	if snap { // fell out of the kept window mid-session: start over from a snapshot
		rl.startControls(ch)
		return control.Record{}, false, head
	}
	return r, ok, head
}

// writeControl sends ch record r.
func (ch *child) writeControl(r control.Record) bool {
	body, err := control.AppendRecord(ch.l.ctlBuf[:0], r)
	if err != nil {
		ch.log.Error("control record", "err", err)
		return false
	}
	ch.l.ctlBuf = body
	if !ch.write(wire.AppendRelayFrame(ch.l.scratch[:0], wire.RelayControl, body)) {
		return false
	}
	ch.ctlSerial = r.Serial
	return true
}
