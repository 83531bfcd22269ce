package session

import (
	"strings"
	"testing"

	"tickrelay/alert"
	"tickrelay/child/frames"
	"tickrelay/control"
)

// alertRig is a rig whose loop submits to a sequencer of the test's and
// reads a replica that the records build, as the child's relay does.
type alertRig struct {
	*rig
	seq       *control.Sequencer
	replica   *alert.Set
	submitted []control.Op
}

func newAlertRig(t *testing.T, cfg Config, ents bool) *alertRig {
	a := &alertRig{seq: control.NewSequencer(1, 100), replica: alert.NewSet(false, control.FiresKept)}
	cfg.Submit = func(op control.Op) error { a.submitted = append(a.submitted, op); return nil }
	cfg.Alerts = func(read func(*alert.Set)) { read(a.replica) }
	if ents {
		a.rig, _ = entRig(t, cfg)
	} else {
		a.rig = newRig(t, cfg)
	}
	return a
}

// sequence sequences what the loop submitted, then runs the engine on an
// update of sym's field to price at pos; the records reach the replica and
// the loop.
func (a *alertRig) sequence() {
	from := a.seq.Serial()
	for _, op := range a.submitted {
		if _, _, err := a.seq.Submit(0, op, a.added, 0); err != nil {
			a.t.Fatal(err)
		}
	}
	a.submitted = nil
	a.deliver(from)
}

func (a *alertRig) update(sym uint32, f alert.Field, price int32, pos uint64) {
	from := a.seq.Serial()
	a.seq.Match(sym, f, price, pos, 1234)
	a.deliver(from)
}

func (a *alertRig) deliver(from uint64) {
	recs, _ := a.seq.Since(a.seq.Era(), from)
	for _, r := range recs {
		if err := control.ApplyAlert(a.replica, r); err != nil {
			a.t.Fatal(err)
		}
		b := frames.GetBatch()
		b.Control = &frames.ControlMark{Record: r}
		a.l.Add(b, a.now)
	}
}

func TestAlertCommands(t *testing.T) {
	a := newAlertRig(t, Config{MaxAlerts: 2}, false)
	c := a.open()
	say := func(line string, want ...string) {
		t.Helper()
		a.input(c, line)
		got := c.lines()
		if len(got) != len(want) {
			t.Fatalf("%q: %q, want %q", line, got, want)
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Fatalf("%q: %q, want %q", line, got, want)
			}
		}
	}
	say("ALERT a1 00005 last >= 1.5", "ERR BADARG alerts belong to an identity")
	say("HELLO bob", "OK HELLO bob 0")
	for _, bad := range []string{
		"ALERT a1 00005 high >= 1.5", "ALERT a1 00005 last > 1.5", "ALERT a1 00005 last >= 1.2345",
		"ALERT a1 00005 last >= 9999999", "ALERT a1 00005 last >= 0", "ALERT a!1 00005 last >= 1",
		"ALERT a1 00005 last >= 1 repeat 0", "ALERT a1 x/y last >= 1", "UNALERT nope", "HELLO b!b",
	} {
		say(bad, "ERR BADARG")
	}
	say("HELLO carol", "ERR BADARG HELLO already named bob")
	say("ALERT a1 00005 last >= 1.5")
	say("ALERT a1 00005 bid <= 1", "ERR BADARG alert id a1 is in use") // waiting for its record
	a.sequence()
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "OK ALERT a1 ") {
		t.Fatalf("after sequencing: %q", got)
	}
	say("ALERT a2 00006 ask <= 2 repeat 0.5")
	a.sequence()
	c.lines()
	say("ALERT a3 00006 ask <= 2", "ERR LIMIT 2 alerts")
	say("ALERTS", "ALERT a", "ALERT a", "OK ALERTS 2")

	// The engine fires a1 at 1.5; a2 (repeat) at 1.9, then again after
	// moving back past 2.5.
	a.update(5, alert.Last, 1400, 10)
	a.update(5, alert.Last, 1500, 11)
	a.update(6, alert.Ask, 1900, 12)
	a.update(6, alert.Ask, 2600, 13)
	a.update(6, alert.Ask, 2000, 14)
	got := c.lines()
	want := []string{"FIRED a1 11 00005 last=1.500 t=1234 n=1", "FIRED a2 12 00006 ask=1.900 t=1234 n=2", "FIRED a2 14 00006 ask=2.000 t=1234 n=3"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("fires %q, want %q", got, want)
	}
	say("ALERTS", "ALERT a2 00006 ask <= 2.000 repeat 0.500 waiting", "OK ALERTS 1")

	// Another connection of bob's gets what it missed after n=1.
	c2 := a.open()
	a.input(c2, "HELLO bob 1")
	if got := c2.lines(); strings.Join(got, "|") != "OK HELLO bob 3|"+want[1]+"|"+want[2] {
		t.Fatalf("HELLO bob 1: %q", got)
	}
	a.update(6, alert.Ask, 2600, 15)
	a.update(6, alert.Ask, 1000, 16) // both of bob's connections get it
	if got, got2 := c.lines(), c2.lines(); len(got) != 1 || len(got2) != 1 || got[0] != got2[0] || !strings.HasSuffix(got[0], "n=4") {
		t.Fatalf("a fire to both: %q %q", got, got2)
	}
	say("UNALERT a2")
	a.sequence()
	if got := c.lines(); len(got) != 1 || got[0] != "OK UNALERT a2" {
		t.Fatalf("UNALERT: %q", got)
	}
	say("ALERTS", "OK ALERTS 0")
}

func TestAlertEntitled(t *testing.T) {
	a := newAlertRig(t, Config{}, true)
	c := a.open()
	a.input(c, "AUTH alice-token-1")
	c.lines()
	a.input(c, "HELLO bob")
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "ERR DENIED") {
		t.Fatalf("HELLO of another identity: %q", got)
	}
	a.input(c, "ALERT a1 00009 last >= 1") // alice sees 1..5
	if got := c.lines(); len(got) != 1 || got[0] != "ERR DENIED 00009" {
		t.Fatalf("a denied symbol: %q", got)
	}
	a.input(c, "ALERT a1 00003 last >= 1") // the token's identity owns it, no HELLO needed
	a.sequence()
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "OK ALERT a1 ") {
		t.Fatalf("%q", got)
	}
	if _, _, ok := a.replica.Get("alice", "a1"); !ok {
		t.Fatal("alice's alert is not in the replica")
	}
}
