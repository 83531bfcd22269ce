package child

import (
	"errors"
	"fmt"

	"tickrelay/alert"

	"tickrelay/child/frames"
	"tickrelay/control"
	"tickrelay/wire"
)

// The child's end of the control stream (package control; root/control.go
// is the other): it submits ops to the sequencing root and applies the
// records the root places in the relay stream, each between the same two
// items on every child, to its replica of the group state.
//
// With an A/B pair the first root (Config.Roots[0]) sequences: ops go to
// it and records are taken from its line only (root B sequences what
// nobody sends it). While it is down no membership changes; the feed goes
// on from B. A record that arrives once the child has already published
// items after its place (root B ran ahead of A) is applied at once and
// counted late (tickrelay_child_control_late_total): with one root it
// cannot happen.

// controlsApplied is how far the replica is (era, serial).
func (ch *Child) controlsApplied() (era, serial uint64) {
	ch.relayMu.Lock()
	defer ch.relayMu.Unlock()
	return ch.groups.Era(), ch.groups.Serial()
}

// ErrNoSequencer: the sequencing root's line is down.
var ErrNoSequencer = errors.New("child: the sequencing root (the first -root) is not connected")

// SubmitControl sends op to the sequencing root; it takes effect once the
// record comes back in the stream (Config.OnControl sees it).
func (ch *Child) SubmitControl(op control.Op) error {
	body, err := control.AppendOp(nil, op)
	if err != nil {
		return err
	}
	send := ch.lines[0].send.Load()
	if send == nil {
		return ErrNoSequencer
	}
	return (*send)(wire.AppendRelayFrame(nil, wire.RelayControlReq, body))
}

// onControl applies a Control or ControlSnapshot frame from line l (under
// relayMu). An error ends the session: its successor's ControlSync gets
// the records again, or a snapshot.
func (ch *Child) onControl(l *line, typ byte, p []byte, log logger) error {
	if l.i != 0 {
		return nil // only the sequencing root's records count
	}
	ch.publishOpen() // the record goes between the items before it and after
	at := wire.Pos(ch.state.Epoch(), ch.published.Load())
	if typ == wire.RelayControlSnapshot {
		return ch.onSnapshotPart(p, at, log)
	}
	r, err := control.ParseRecord(p)
	if err != nil {
		ch.metrics.ControlErrors.Inc()
		return fmt.Errorf("control record: %w", err)
	}
	applied, err := ch.groups.Apply(r)
	if err != nil {
		ch.metrics.ControlErrors.Inc()
		return err
	}
	if !applied {
		return nil
	}
	if r.Op.Kind.IsAlert() {
		ch.alertsMu.Lock()
		err = control.ApplyAlert(ch.alerts, r)
		n := ch.alerts.Len()
		ch.alertsMu.Unlock()
		ch.metrics.AlertsStanding.Set(float64(n))
		if err != nil { // the replica went its own way: a bug, said loudly; a resync mends it
			ch.metrics.ControlErrors.Inc()
			return fmt.Errorf("alert record %d: %w", r.Serial, err)
		}
	}
	ch.publishControl(&frames.ControlMark{Record: r})
	late := at > r.After
	if late {
		ch.metrics.ControlLate.Inc()
	}
	ch.metrics.ControlApplied.Inc()
	ch.metrics.ControlSerial.Set(float64(r.Serial))
	if ch.cfg.OnControl != nil {
		ch.cfg.OnControl(r, at, late)
	}
	return nil
}

// onSnapshotPart takes one part of a control snapshot; with the last the
// replicas (groups and alerts) are replaced as a whole, in this place of
// the stream. Alert records load into a set of their own as they come (a
// million of them would not sit well as records).
func (ch *Child) onSnapshotPart(p []byte, at uint64, log logger) error {
	h, live, err := control.ParseSnapshot(p)
	if err != nil {
		ch.metrics.ControlErrors.Inc()
		return fmt.Errorf("control snapshot: %w", err)
	}
	in := &ch.snapIn
	if h.Part == 0 {
		in.hdr, in.joins, in.alerts = h, nil, alert.NewSet(false, control.FiresKept)
	} else if in.alerts == nil || h.Era != in.hdr.Era || h.Serial != in.hdr.Serial || h.Part != in.hdr.Part+1 {
		ch.metrics.ControlErrors.Inc()
		return fmt.Errorf("control snapshot part %d of era %d serial %d does not follow part %d", h.Part, h.Era, h.Serial, in.hdr.Part)
	}
	in.hdr = h
	for _, r := range live {
		if !r.Op.Kind.IsAlert() {
			in.joins = append(in.joins, r)
		} else if err := control.LoadAlert(in.alerts, r); err != nil {
			ch.metrics.ControlErrors.Inc()
			return fmt.Errorf("control snapshot: %w", err)
		}
	}
	if !h.Last {
		return nil
	}
	ch.groups.Load(h.Era, h.Serial, in.joins)
	ch.alertsMu.Lock()
	ch.alerts = in.alerts
	n := ch.alerts.Len()
	ch.alertsMu.Unlock()
	ch.metrics.AlertsStanding.Set(float64(n))
	ch.publishControl(&frames.ControlMark{Record: control.Record{Era: h.Era, Serial: h.Serial}, Snapshot: true, Live: in.joins})
	ch.metrics.ControlSerial.Set(float64(h.Serial))
	log.Info("control snapshot", "era", h.Era, "serial", h.Serial, "members", len(in.joins), "alerts", n, "parts", h.Part+1)
	ch.snapIn = snapshotIn{}
	if ch.cfg.OnControl != nil {
		ch.cfg.OnControl(control.Record{Era: h.Era, Serial: h.Serial}, at, false)
	}
	return nil
}

// snapshotIn is a control snapshot coming in parts.
type snapshotIn struct {
	hdr    control.SnapshotHeader
	joins  []control.Record
	alerts *alert.Set
}

// readAlerts runs fn on the alert replica, read locked (the loops' ALERT,
// ALERTS and HELLO).
func (ch *Child) readAlerts(fn func(s *alert.Set)) {
	ch.alertsMu.RLock()
	defer ch.alertsMu.RUnlock()
	fn(ch.alerts)
}

// publishControl hands the loops a control marker, in its place.
func (ch *Child) publishControl(mk *frames.ControlMark) {
	b := frames.GetBatch()
	b.Control, b.Last = mk, ch.published.Load()
	ch.publish(b)
}
