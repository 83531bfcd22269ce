package session

import (
	"slices"
	"strings"
	"testing"

	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// reset starts epoch in the core at seq 1 and queues its marker, as the
// child's relay does.
func (r *rig) reset(epoch uint32) {
	line := wire.ResetLine{Epoch: epoch, Seq: 1}
	r.state.Write(func(c *frames.Core) {
		line.Prev, line.PrevLast = c.Epoch(), c.LastSeq()
		c.Reset(epoch, 1)
	})
	b := frames.GetBatch()
	b.Reset, b.Last = &line, 0
	b.Share(1)
	r.queue = append(r.queue, b)
	r.seq = 0
}

// TestEpochReset: at an epoch change every client gets the last epoch's
// frames, then RESET naming where it ended, then the new epoch's frames
// from seq 1 under its old subscriptions. A client behind gets what it is
// owed of the last epoch from the history, before its RESET. A SUB or
// RESUME sent while the loop still delivers the last epoch's frames waits
// and is answered in the new epoch.
func TestEpochReset(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1 << 20})
	all, named, behind, late := r.open(), r.open(), r.open(), r.open()
	r.input(all, "SUB *")
	r.input(named, "SUB 00003")
	r.input(behind, "SUB *")
	r.apply(30)
	r.drain()
	r.l.Tick() // the SUB * streams level
	for _, c := range []*testConn{all, named, behind} {
		c.lines()
	}
	behind.pending = 1
	r.apply(10)
	r.drain() // its connection holds 31..40
	r.apply(5)
	r.drain() // it owes 41..45
	r.apply(5)
	r.reset(9)
	r.input(late, "SUB 00002") // the core is in epoch 9, the loop not yet
	if got := late.lines(); len(got) != 0 {
		t.Fatalf("a SUB answered while the loop lags the core's epoch: %q", got)
	}
	r.input(late, "RESUME 1:5 00002")
	r.apply(20) // epoch 9: seqs 1..20
	r.drain()

	reset := "RESET 9 1 0 50"
	seqs, other := frameSeqs(t, all.lines())
	want := append(feedtest.Seqs(30, 50, "*"), feedtest.Seqs(0, 20, "*")...)
	if !slices.Equal(seqs, want) || !slices.Equal(other, []string{reset}) {
		t.Fatalf("\"*\" client: %v and %q", seqs, other)
	}
	seqs, other = frameSeqs(t, named.lines())
	if w := append(feedtest.Seqs(30, 50, "00003"), feedtest.Seqs(0, 20, "00003")...); len(w) < 2 || !slices.Equal(seqs, w) || !slices.Equal(other, []string{reset}) {
		t.Fatalf("named client: %v and %q, want %v", seqs, other, w)
	}
	behind.pending = 0
	r.l.Tick()
	seqs, other = frameSeqs(t, behind.lines())
	if w := append(feedtest.Seqs(30, 50, "*"), feedtest.Seqs(0, 20, "*")...); !slices.Equal(seqs, w) || !slices.Equal(other, []string{reset}) || behind.cl.behind {
		t.Fatalf("client behind at the reset: %v and %q", seqs, other)
	}
	// The waiting SUB runs at the marker: the new epoch's image as of the
	// core's last then (20) and its OK in epoch 9; the RESUME of epoch 1:
	// GONE.
	_, other = frameSeqs(t, late.lines())
	if len(other) != 3 || other[0] != reset || other[1] != "OK SUB 00002 20 9" || other[2] != "ERR GONE epoch 1 is not held; the current epoch is 9" {
		t.Fatalf("lines that waited for the epoch: %q", other)
	}
}

// TestChildrenCommands: CHILDREN answers the directory's last line (epoch
// 0 and no children before any); WATCH CHILDREN answers it and gets each
// pushed change, CHILDREN alone does not; a bad line gets ERR BADARG.
func TestChildrenCommands(t *testing.T) {
	r := newRig(t, Config{})
	watcher, asker := r.open(), r.open()
	r.input(asker, "CHILDREN")
	r.input(watcher, "WATCH CHILDREN")
	if a, w := asker.lines(), watcher.lines(); len(a) != 1 || a[0] != "CHILDREN 0" || len(w) != 1 || w[0] != "CHILDREN 0" {
		t.Fatalf("before any directory: %q %q", a, w)
	}
	marker := func(line string, push bool) {
		b := frames.GetBatch()
		b.Children, b.Push = []byte(line+"\n"), push
		b.Share(1)
		r.queue = append(r.queue, b)
		r.drain()
	}
	one := "CHILDREN 3 a=h:1,up,1,0,0,0"
	marker(one, true)
	marker("CHILDREN 3 a=h:1,up,2,0,0,0", false) // loads only: not pushed
	if w, a := watcher.lines(), asker.lines(); len(w) != 1 || w[0] != one || len(a) != 0 {
		t.Fatalf("pushed: watcher %q, asker %q", w, a)
	}
	r.input(asker, "CHILDREN")
	if a := asker.lines(); len(a) != 1 || a[0] != "CHILDREN 3 a=h:1,up,2,0,0,0" {
		t.Fatalf("CHILDREN after the push: %q", a)
	}
	for _, bad := range []string{"CHILDREN x", "WATCH", "WATCH SUB"} {
		r.input(asker, bad)
		if a := asker.lines(); len(a) != 1 || !strings.HasPrefix(a[0], "ERR BADARG ") {
			t.Fatalf("%q: %q", bad, a)
		}
	}
}

// TestFirstEpochKeepsSubscriptions: a RESUME taken before the child knew
// any epoch meant the current one: the child's first epoch (no RESET) keeps
// it, so the client gets seqs after its RESUME point only.
func TestFirstEpochKeepsSubscriptions(t *testing.T) {
	r := newRig(t, Config{})
	c := r.open()
	r.input(c, "RESUME 21 *") // nothing held yet: it waits for seq 21
	c.lines()
	r.reset(7) // the child's first epoch: Prev 0, PrevLast 0
	r.apply(30)
	r.drain()
	seqs, other := frameSeqs(t, c.lines())
	if !slices.Equal(seqs, feedtest.Seqs(20, 30, "*")) || len(other) != 0 {
		t.Fatalf("after the first epoch: %v and %q", seqs, other)
	}
}
