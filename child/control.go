package child

import (
	"errors"
	"fmt"

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
		era, serial, live, err := control.ParseSnapshot(p)
		if err != nil {
			ch.metrics.ControlErrors.Inc()
			return fmt.Errorf("control snapshot: %w", err)
		}
		ch.groups.Load(era, serial, live)
		ch.publishControl(&frames.ControlMark{Record: control.Record{Era: era, Serial: serial}, Snapshot: true, Live: live})
		ch.metrics.ControlSerial.Set(float64(serial))
		log.Info("control snapshot", "era", era, "serial", serial, "members", len(live))
		if ch.cfg.OnControl != nil {
			ch.cfg.OnControl(control.Record{Era: era, Serial: serial}, at, false)
		}
		return nil
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

// publishControl hands the loops a control marker, in its place.
func (ch *Child) publishControl(mk *frames.ControlMark) {
	b := frames.GetBatch()
	b.Control, b.Last = mk, ch.published.Load()
	ch.publish(b)
}
