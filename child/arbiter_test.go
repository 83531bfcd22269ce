package child

import (
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/internal/feedtest"
	"tickrelay/wire"
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
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	a := newArbiter(2, time.Second)
	if ok, _ := a.maySkip(0, t0); !ok {
		t.Error("no line streaming, yet line 0 may not skip")
	}
	a.streaming(0, true)
	if ok, _ := a.maySkip(0, t0); !ok {
		t.Error("line 0 streaming: it may skip (it is the one asking)")
	}
	if ok, retry := a.maySkip(1, t0); ok || retry != 0 {
		t.Errorf("line 0 streaming: line 1 may skip (%v) or has a retry (%v), want neither", ok, retry)
	}
	a.ended(0, t0)
	if ok, retry := a.maySkip(1, at(300*time.Millisecond)); ok || retry != 700*time.Millisecond {
		t.Errorf("line 0 rejoining: maySkip(1) = %v, retry %v; want false, 700ms", ok, retry)
	}
	if ok, _ := a.maySkip(1, at(time.Second)); !ok {
		t.Error("line 0's grace is over, yet line 1 may not skip")
	}
	a.ended(0, at(50*time.Millisecond)) // its next session did not stream
	if ok, _ := a.maySkip(1, at(60*time.Millisecond)); !ok {
		t.Error("line 0 failed to come back, yet line 1 may not skip")
	}

	// A line that heartbeats and drops again and again holds the others
	// back for one grace from its first drop, not one per drop.
	a.streaming(0, true)
	a.ended(0, at(2*time.Second))
	for d := 2100 * time.Millisecond; d < 3*time.Second; d += 100 * time.Millisecond {
		a.streaming(0, false) // a heartbeat, no items
		a.ended(0, at(d))
	}
	if ok, _ := a.maySkip(1, at(3*time.Second)); !ok {
		t.Error("line 0 flapped on heartbeats for its whole grace, yet line 1 may not skip")
	}
	// Items end the rejoin: the next drop starts a grace of its own.
	a.streaming(0, true)
	a.ended(0, at(4*time.Second))
	if ok, retry := a.maySkip(1, at(4*time.Second)); ok || retry != time.Second {
		t.Errorf("line 0 down again after items: maySkip(1) = %v, retry %v; want false, 1s", ok, retry)
	}
}

// TestArbiterWake: wake fires once the last streaming line goes down, and
// when the last rejoining line fails to come back; not while another line
// streams nor for a line down already.
func TestArbiterWake(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newArbiter(3, time.Minute)
	c := a.wake
	if a.ended(1, now) || closed(c) { // down -> down
		t.Fatal("a line that was down ended streaming, or woke the others")
	}
	a.streaming(0, true)
	a.streaming(2, true)
	if !a.ended(0, now) || closed(c) || !a.otherUp(1) || a.otherUp(2) {
		t.Fatal("wake fired, or otherUp is wrong, while line 2 streams")
	}
	if a.ended(0, now) || closed(c) {
		t.Fatal("line 0 failed to come back while line 2 streams: wake fired")
	}
	a.ended(2, now)
	if !closed(c) || a.anyUp() {
		t.Fatal("the last streaming line went down: wake did not fire")
	}
	c = a.wake
	if closed(c) {
		t.Fatal("the next wake is already closed")
	}
	a.ended(2, now) // its next session did not come up
	if !closed(c) {
		t.Fatal("the last rejoining line failed to come back: wake did not fire")
	}
	c = a.wake
	a.ended(2, now)
	if closed(c) {
		t.Fatal("a line neither streaming nor rejoining ended: wake fired")
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
	if !slices.Equal(rd.frames, feedtest.Seqs(0, 6000, "*")) {
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
	if !slices.Equal(rd.frames, feedtest.Seqs(0, 3000, "*")) {
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
	if !slices.Equal(rd.frames, feedtest.Seqs(0, 3100, "*")) {
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
	if !slices.Equal(rd.frames, feedtest.Seqs(0, 600, "*")) {
		t.Fatalf("client got %d frames, want 1..600 once each, in order", len(rd.frames))
	}
	t.Logf("B took over %v after A went down", time.Since(start))
}

// waitMetricAtLeast waits until get() >= want.
func waitMetricAtLeast(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want at least %v", what, get(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startYielding runs a child on roots A and B where B's root no longer
// holds seqs 501..999: A streams 1..500 while B's line yields to it.
func startYielding(t *testing.T, mod func(*Config)) (a, b *fakeRoot, ch *Child, rd *reader) {
	a, b = newFakeRoot(t), newFakeRoot(t)
	b.set(func(r *fakeRoot) { r.oldest, r.down = 1000, true })
	ch = startChild(t, a, func(c *Config) {
		c.Roots = []string{a.addr(), b.addr()}
		if mod != nil {
			mod(c)
		}
	})
	<-a.hellos
	rd = subAll(t, ch)
	a.publish(500)
	b.publish(2000)
	if err := rd.untilSeq(500); err != nil {
		t.Fatal(err)
	}
	b.setDown(false)
	waitMetricAtLeast(t, "SeqGone from B", func() float64 {
		return testutil.ToFloat64(ch.Metrics().RootErrors.WithLabelValues(b.addr(), "seq_gone"))
	}, 1)
	return a, b, ch, rd
}

// TestABBriefDropLosesNothing: A's line drops for a moment. B's line wakes
// at once, but while A may be back it does not skip the seqs B's root lost:
// A returns and delivers them.
func TestABBriefDropLosesNothing(t *testing.T) {
	a, _, ch, rd := startYielding(t, nil)
	a.set(func(r *fakeRoot) { r.dropAt = 600 })
	a.publish(1500)
	if err := rd.untilSeq(2000); err != nil {
		t.Fatalf("%v (at seq %d)", err, ch.LastSeq())
	}
	if !slices.Equal(rd.frames, feedtest.Seqs(0, 2000, "*")) {
		t.Fatalf("client got %d frames, want 1..2000 once each, in order", len(rd.frames))
	}
	if l := testutil.ToFloat64(ch.Metrics().LostItems); l != 0 {
		t.Fatalf("lost items %v: B skipped seqs A was about to deliver", l)
	}
}

// TestABSkipWhenDroppedLineStaysDown: A goes down for good. Once A's line
// fails to come back, B's line skips to what its root holds, without waiting
// out the rejoin grace (here over 12 s).
func TestABSkipWhenDroppedLineStaysDown(t *testing.T) {
	a, _, ch, rd := startYielding(t, func(c *Config) { c.DialTimeout = 10 * time.Second })
	a.setDown(true)
	start := time.Now()
	rd.c.Conn().SetReadDeadline(start.Add(5 * time.Second))
	if err := rd.untilSeq(2000); err != nil {
		t.Fatalf("after A went down: %v (at seq %d)", err, ch.LastSeq())
	}
	if want := append(feedtest.Seqs(0, 500, "*"), feedtest.Seqs(999, 2000, "*")...); !slices.Equal(rd.frames, want) {
		t.Fatalf("client got %d frames, want 1..500 and 1000..2000 once each, in order", len(rd.frames))
	}
	if l := testutil.ToFloat64(ch.Metrics().LostItems); l != 499 {
		t.Fatalf("lost items %v, want 499 (501..999)", l)
	}
	t.Logf("B skipped to its root's oldest seq %v after A went down", time.Since(start))
}

// TestABWakeDuringSession: the last streaming line goes down while B's
// line is in a session that will not stream (its root holds it, then hangs
// up). B's line retries as soon as that session ends instead of waiting out
// its backoff (here at least 2.5 s).
func TestABWakeDuringSession(t *testing.T) {
	a := newFakeRoot(t)
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	bconns := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := bl.Accept()
			if err != nil {
				return
			}
			bconns <- c
		}
	}()
	ch := startChild(t, a, func(c *Config) {
		c.Roots = []string{a.addr(), bl.Addr().String()}
		c.BackoffMin, c.BackoffMax = 5*time.Second, time.Minute
	})
	held := <-bconns // B's first session: held open, silent
	defer held.Close()
	<-a.hellos
	rd := subAll(t, ch)
	a.publish(500)
	if err := rd.untilSeq(500); err != nil {
		t.Fatal(err)
	}
	a.setDown(true)
	waitMetric(t, "root_up of A", func() float64 { return testutil.ToFloat64(ch.Metrics().RootUp.WithLabelValues(a.addr())) }, 0)
	held.Close()
	select {
	case c := <-bconns:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("B's line waited out its backoff after a session that ended once A had gone down")
	}
}

// flappingRoot accepts relay sessions, sends a heartbeat at once, holds the
// connection for hold and hangs up: streaming, but delivering nothing.
func flappingRoot(t *testing.T, hold time.Duration) (addr string, sessions *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sessions = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sessions.Add(1)
			go func() {
				defer c.Close()
				c.Write(wire.AppendHeartbeatFrame(nil, 0, time.Now().UnixNano()))
				time.Sleep(hold)
			}()
		}
	}()
	return ln.Addr().String(), sessions
}

// TestABFlappingLineHoldsOneGrace: A's root heartbeats and hangs up on
// every session, delivering nothing; B's root holds seqs 1000.. only. A's
// drops hold B's skip back for one grace (here 0.71 s) from the first, not
// one per drop: B skips and the feed flows.
func TestABFlappingLineHoldsOneGrace(t *testing.T) {
	aAddr, aSessions := flappingRoot(t, 20*time.Millisecond)
	b := newFakeRoot(t)
	b.set(func(r *fakeRoot) { r.oldest, r.down = 1000, true })
	b.publish(2000)
	go func() { // the fake root blocks once 100 hellos are unread
		for range b.hellos {
		}
	}()
	ch := startChild(t, b, func(c *Config) {
		c.Roots = []string{aAddr, b.addr()}
		c.DialTimeout, c.IdleTimeout = 200*time.Millisecond, 500*time.Millisecond
	})
	waitMetricAtLeast(t, "A's sessions", func() float64 { return float64(aSessions.Load()) }, 2)
	rd := subAll(t, ch)
	b.setDown(false)
	start := time.Now()
	rd.c.Conn().SetReadDeadline(start.Add(6 * time.Second))
	if err := rd.untilSeq(2000); err != nil {
		t.Fatalf("B's line never skipped while A flaps: %v (A's sessions %d, last seq %d)", err, aSessions.Load(), ch.LastSeq())
	}
	t.Logf("B skipped after %v; A's sessions %d", time.Since(start), aSessions.Load())
}

// TestABRejoinFailsAfterYield: B's line yields to A's rejoin (SeqGone) and
// A's rejoin fails a moment later. However close the two, B retries at once
// rather than waiting out the grace it was told at its SeqGone (6 s).
func TestABRejoinFailsAfterYield(t *testing.T) {
	seqGone := wire.AppendRelayError(nil, wire.RelayErr{Code: wire.CodeSeqGone, Seq: 1000, Reason: "gone"})
	for trial := range 10 {
		a, b := newRawRoot(t), newRawRoot(t)
		startChild(t, &fakeRoot{ln: a.ln}, func(c *Config) {
			c.Roots = []string{a.ln.Addr().String(), b.ln.Addr().String()}
			c.DialTimeout, c.IdleTimeout = 3*time.Second, 3*time.Second
			c.ClockInterval = time.Hour
		})
		a1 := a.next(t)
		a1.Write(wire.AppendHeartbeatFrame(nil, 0, time.Now().UnixNano()))
		time.Sleep(20 * time.Millisecond) // A streams
		b.next(t).Write(seqGone)          // B yields to A
		time.Sleep(20 * time.Millisecond)
		a1.Close() // A rejoining; the wake: B retries at once
		b2, a2 := b.next(t), a.next(t)
		time.Sleep(20 * time.Millisecond) // both sessions open, silent
		b2.Write(seqGone)                 // B yields to A's rejoin...
		time.Sleep(time.Duration(trial%10) * 20 * time.Microsecond)
		a2.Close() // ...which fails
		select {
		case <-b.conns:
		case <-time.After(2 * time.Second):
			t.Fatalf("trial %d: B's line did not retry within 2 s after A's rejoin failed", trial)
		}
	}
}

// rawRoot is a listener whose relay connections the test drives by hand.
type rawRoot struct {
	ln    net.Listener
	conns chan net.Conn
}

func newRawRoot(t *testing.T) *rawRoot {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawRoot{ln, make(chan net.Conn, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			r.conns <- c
		}
	}()
	return r
}

func (r *rawRoot) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-r.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no relay connection within 5 s")
		return nil
	}
}
