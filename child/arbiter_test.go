package child

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestArbitrate(t *testing.T) {
	for _, tc := range []struct {
		last, seq uint64
		want      verdict
	}{
		{0, 1, apply}, {0, 2, gap}, {41, 42, apply}, {41, 41, duplicate}, {41, 7, duplicate}, {41, 100, gap},
	} {
		if got := arbitrate(tc.last, tc.seq); got != tc.want {
			t.Errorf("arbitrate(last %d, seq %d) = %d, want %d", tc.last, tc.seq, got, tc.want)
		}
	}
	a := newArbiter(2)
	if !a.maySkip(0) {
		t.Error("no line streaming, yet line 0 may not skip")
	}
	a.setUp(0, true)
	if !a.maySkip(0) || a.maySkip(1) {
		t.Error("line 0 streaming: it may skip (it is the one asking), line 1 may not")
	}
	a.setUp(0, false)
	if !a.maySkip(1) {
		t.Error("line 0 down again, yet line 1 may not skip")
	}
}

// TestArbiterAllDown: allDown fires once the last streaming line goes
// down, not while another streams nor for a line already down.
func TestArbiterAllDown(t *testing.T) {
	a := newArbiter(3)
	fired := func(c chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	c := a.allDown
	a.setUp(1, false) // down -> down
	a.setUp(0, true)
	a.setUp(2, true)
	a.setUp(0, false) // line 2 still streams
	if fired(c) || !a.otherUp(1) || a.otherUp(2) {
		t.Fatal("allDown fired, or otherUp wrong, while line 2 streams")
	}
	a.setUp(2, false)
	if !fired(c) || a.anyUp() {
		t.Fatal("the last streaming line went down: allDown did not fire")
	}
	if next := a.allDown; fired(next) {
		t.Fatal("the next allDown is already closed")
	}
}

// startABChild runs a child with a relay line to each of roots and waits
// for each line's first Hello.
func startABChild(t *testing.T, roots ...*fakeRoot) *Child {
	t.Helper()
	ch := startChild(t, roots[0], func(c *Config) {
		c.Roots = nil
		for _, r := range roots {
			c.Roots = append(c.Roots, r.addr())
		}
	})
	return ch
}

func waitMetric(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", what, get(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestABFailover: a child on an A/B pair of roots takes each seq once from
// whichever line has it first, and carries on without a gap or a duplicate
// while either root is down.
func TestABFailover(t *testing.T) {
	a, b := newFakeRoot(t), newFakeRoot(t)
	ch := startABChild(t, a, b)
	for _, r := range []*fakeRoot{a, b} {
		if h := <-r.hellos; h.FromSeq != 1 {
			t.Fatalf("first hello %+v", h)
		}
	}
	rd := subAll(t, ch)
	publish := func(n uint64) { a.publish(n); b.publish(n) }

	publish(2000) // both lines deliver every seq: one applies it, the other's copy is a duplicate
	if err := rd.untilSeq(2000); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, "duplicates", func() float64 { return testutil.ToFloat64(ch.Metrics().Duplicates) }, 2000)

	a.setDown(true) // B alone
	publish(2000)
	if err := rd.untilSeq(4000); err != nil {
		t.Fatal(err)
	}
	a.setDown(false) // A rejoins from the last seq + 1, then B goes
	if h := <-a.hellos; h.FromSeq < 4001 {
		t.Fatalf("A rejoined from %d, want > 4000", h.FromSeq)
	}
	b.setDown(true)
	publish(2000)
	if err := rd.untilSeq(6000); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rd.frames, expect(0, 6000, "*")) {
		t.Fatalf("client got %d frames, want 1..6000 once each, in order", len(rd.frames))
	}
	m := ch.Metrics()
	if g, l := testutil.ToFloat64(m.Gaps), testutil.ToFloat64(m.LostItems); g != 0 || l != 0 {
		t.Fatalf("gaps %v, lost items %v", g, l)
	}
	// Each root's share of the items adds up; B, down now, is not up.
	fromA, fromB := testutil.ToFloat64(m.RootItems.WithLabelValues(a.addr())), testutil.ToFloat64(m.RootItems.WithLabelValues(b.addr()))
	if fromA+fromB != 6000 || fromA < 2000 || fromB < 2000 {
		t.Fatalf("items from A %v, from B %v: want 6000 in all, at least the 2000 each carried alone", fromA, fromB)
	}
	waitMetric(t, "root_up of B", func() float64 { return testutil.ToFloat64(m.RootUp.WithLabelValues(b.addr())) }, 0)
	if up := testutil.ToFloat64(m.RootUp.WithLabelValues(a.addr())); up != 1 {
		t.Fatalf("root_up of A %v, want 1", up)
	}
}

// TestABSeqGoneFilledByOther: root A no longer holds the seqs the child
// needs; while B's line streams them, A's line waits rather than skipping
// them, and joins once the child is past the hole.
func TestABSeqGoneFilledByOther(t *testing.T) {
	a, b := newFakeRoot(t), newFakeRoot(t)
	a.set(func(r *fakeRoot) { r.oldest, r.down = 1000, true })
	ch := startABChild(t, a, b)
	<-b.hellos
	rd := subAll(t, ch)
	a.publish(500)
	b.publish(500)
	if err := rd.untilSeq(500); err != nil {
		t.Fatal(err)
	}
	a.setDown(false)
	for i := range 2 { // A answers SeqGone; its line retries rather than skip
		if h := <-a.hellos; h.FromSeq != 501 {
			t.Fatalf("A's hello %d from %d, want 501 (below its oldest seq 1000)", i+1, h.FromSeq)
		}
	}
	if last, lost := ch.LastSeq(), testutil.ToFloat64(ch.Metrics().LostItems); last != 500 || lost != 0 {
		t.Fatalf("after A's SeqGone: last seq %d, lost items %v; want 500 and 0 (B streams those seqs)", last, lost)
	}
	a.publish(2500)
	b.publish(2500)
	if err := rd.untilSeq(3000); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rd.frames, expect(0, 3000, "*")) {
		t.Fatalf("client got %d frames, want 1..3000 once each, in order", len(rd.frames))
	}
	if l := testutil.ToFloat64(ch.Metrics().LostItems); l != 0 {
		t.Fatalf("lost items %v: A skipped seqs B was streaming", l)
	}
	// A rejoins once past its hole: B goes, A carries the feed.
	b.setDown(true)
	a.publish(100)
	if err := rd.untilSeq(3100); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rd.frames, expect(0, 3100, "*")) {
		t.Fatalf("client got %d frames, want 1..3100 once each, in order", len(rd.frames))
	}
}

func TestConfigRoots(t *testing.T) {
	for _, roots := range [][]string{nil, {""}, {"a:1", "a:1"}, {"a:1", "b:1", "c:1", "d:1", "e:1"}} {
		cfg := DefaultConfig()
		cfg.Roots = roots
		if err := cfg.Validate(); err == nil {
			t.Errorf("Roots %q accepted", roots)
		}
	}
	cfg := DefaultConfig()
	cfg.Roots = []string{"127.0.0.1:9100", "127.0.0.1:9110"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestABFailoverToWaitingLine: B's root is behind (SeqFuture), so its line
// backs off while A streams. When A goes down, B's line retries at once
// instead of waiting out its backoff (here at least 2.5 s).
func TestABFailoverToWaitingLine(t *testing.T) {
	a, b := newFakeRoot(t), newFakeRoot(t)
	b.set(func(r *fakeRoot) { r.future, r.down = true, true })
	ch := startChild(t, a, func(c *Config) {
		c.Roots = []string{a.addr(), b.addr()}
		c.BackoffMin, c.BackoffMax = 5*time.Second, time.Minute
	})
	<-a.hellos
	rd := subAll(t, ch)
	a.publish(500)
	if err := rd.untilSeq(500); err != nil {
		t.Fatal(err)
	}
	b.setDown(false) // B comes up empty: its line asks from 501, gets SeqFuture, backs off
	waitMetric(t, "SeqFuture from B", func() float64 {
		return testutil.ToFloat64(ch.Metrics().RootErrors.WithLabelValues(b.addr(), "seq_future"))
	}, 1)
	b.publish(600)  // B has caught up, but its line waits out its backoff...
	a.setDown(true) // ...until A, the line it yielded to, goes down
	a.publish(100)
	start := time.Now()
	rd.c.Conn().SetReadDeadline(start.Add(2 * time.Second)) // B's backoff: >= 2.5 s
	if err := rd.untilSeq(600); err != nil {
		t.Fatalf("after A went down: %v (at seq %d)", err, ch.LastSeq())
	}
	if !slices.Equal(rd.frames, expect(0, 600, "*")) {
		t.Fatalf("client got %d frames, want 1..600 once each, in order", len(rd.frames))
	}
	t.Logf("B took over %v after A went down", time.Since(start))
}
