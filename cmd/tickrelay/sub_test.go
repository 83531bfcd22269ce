package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tickrelay/child/client"
	"tickrelay/latency"
	"tickrelay/wire"
)

// TestSubStatsClockCorrection: with the child's clock 5 ms ahead of the
// client's, TIME replies let `sub -stats` move receive times onto the
// child's clock, so child->client comes out at its true 200 µs (within the
// offset's bound), and the table shows every hop.
func TestSubStatsClockCorrection(t *testing.T) {
	const (
		base  = int64(1_700_000_000_000_000_000)
		ahead = int64(5_000_000) // child clock minus client clock
	)
	s := newSubStats([]string{"*"}, 0)
	ev := &client.Event{Kind: wire.LineOK, Line: []byte("OK SUB * 0")}
	s.ok(ev)
	// TIME t0 t1 t2: 40 µs each way, the child takes 1 µs.
	for i, up := range []int64{40_000, 90_000, 40_000} {
		t0 := base + int64(i)*1e6
		t1 := t0 + up + ahead
		t2 := t1 + 1000
		ev := &client.Event{Kind: wire.LineTime, Recv: t2 - ahead + 40_000,
			Line: []byte("TIME " + strconv.FormatInt(t0, 10) + " " + strconv.FormatInt(t1, 10) + " " + strconv.FormatInt(t2, 10))}
		s.time(ev)
	}
	if s.childOff != ahead || s.childBound != 40_000 {
		t.Fatalf("offset %d ± %d, want %d ± 40000", s.childOff, s.childBound, ahead)
	}
	for seq := uint64(1); seq <= 100; seq++ {
		st := wire.Stamps{ExchSend: base, RootRecv: base + 10_000, RootSend: base + 11_000}
		st.ChildRecv = st.RootSend + 30_000 + ahead // root and exchange share the client's clock here
		st.ChildSend = st.ChildRecv + 2_000
		ev := &client.Event{Kind: wire.LineFrame, Seq: seq, Stamps: st, Recv: st.ChildSend - ahead + 200_000}
		ev.Msg.Security = 7
		s.frame(ev)
	}
	snap := s.iv.Snapshot()
	if h := snap.Hops[latency.HopChildClient]; h.Count != 100 || h.P50 < 199_000 || h.P50 > 201_000 {
		t.Fatalf("child->client %+v", h)
	}
	var out bytes.Buffer
	s.print(&out, "interval") // before the interval reset: its own counts
	if !strings.HasPrefix(out.String(), "interval: 100 frames, ") {
		t.Errorf("interval line: %q", strings.SplitN(out.String(), "\n", 2)[0])
	}
	s.print(&out, "interval") // the next interval has had none
	if !strings.Contains(out.String(), "interval: 0 frames, ") || !strings.Contains(out.String(), "in all: 100 frames") {
		t.Errorf("second interval line: %q", out.String())
	}
	out.Reset()
	s.resetInterval()
	s.print(&out, "final")
	for _, want := range []string{"100 frames", "exch->root", "root->child", "child->client", "end-to-end", "child-client +5000.0 us"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestSubStatsConflated: after ERR CONFLATED the frames before a symbol's
// next OK are its image, not duplicates; live updates go on after the OK.
func TestSubStatsConflated(t *testing.T) {
	s := newSubStats([]string{"00007"}, 0)
	line := func(kind wire.LineKind, text string) *client.Event {
		return &client.Event{Kind: kind, Line: []byte(text)}
	}
	frame := func(seq uint64) {
		ev := &client.Event{Kind: wire.LineFrame, Seq: seq}
		ev.Msg.Security = 7
		s.frame(ev)
	}
	s.ok(line(wire.LineOK, "OK SUB 00007 0"))
	for seq := uint64(1); seq <= 5; seq++ {
		frame(seq)
	}
	s.err(line(wire.LineErr, "ERR CONFLATED updates skipped while behind; each symbol's image and OK SUB follow"))
	frame(3) // the image: older than the last live frame
	frame(9)
	s.ok(line(wire.LineOK, "OK SUB 00007 10"))
	frame(11)
	frame(12)
	if s.live != 7 || s.dups != 0 || s.conflations != 1 || s.last != 12 {
		t.Fatalf("live %d (want 7), duplicates %d (want 0), conflations %d (want 1), last %d (want 12)", s.live, s.dups, s.conflations, s.last)
	}
}

// TestSubStatsReset: a RESET starts the seqs over; within each epoch a
// "*" client counts no gap and no duplicate, and one that lost the end of
// an epoch (it got less than the RESET names) counts a gap.
func TestSubStatsReset(t *testing.T) {
	s := newSubStats([]string{"*"}, 0)
	line := func(kind wire.LineKind, text string) *client.Event {
		return &client.Event{Kind: kind, Line: []byte(text)}
	}
	frame := func(seq uint64) {
		ev := &client.Event{Kind: wire.LineFrame, Seq: seq}
		ev.Msg.Security = uint32(seq%5 + 1)
		s.frame(ev)
	}
	s.ok(line(wire.LineOK, "OK SUB * 0 7"))
	for seq := uint64(1); seq <= 40; seq++ {
		frame(seq)
	}
	s.reset(line(wire.LineReset, "RESET 8 1 7 40"))
	for seq := uint64(1); seq <= 30; seq++ {
		frame(seq)
	}
	if s.live != 70 || s.dups != 0 || s.gaps != 0 || s.resets != 1 || s.epoch != 8 || s.last != 30 {
		t.Fatalf("live %d, duplicates %d, gaps %d, resets %d, epoch %d, last %d", s.live, s.dups, s.gaps, s.resets, s.epoch, s.last)
	}
	s.reset(line(wire.LineReset, "RESET 9 1 8 35")) // 31..35 of epoch 8 lost
	frame(1)
	if s.gaps != 1 || s.dups != 0 || s.epoch != 9 {
		t.Fatalf("gaps %d, duplicates %d, epoch %d", s.gaps, s.dups, s.epoch)
	}
}

// TestSubResumeGone: `sub -resume` from a seq the child never held ends
// with the child's ERR GONE instead of waiting for frames that never come.
func TestSubResumeGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a root that is not there
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	ch, stop := startChild(t, ln.Addr(), "gone", 1000)
	defer stop()
	<-ch.Ready()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = runSub(ctx, []string{"-addr", ch.Addr().String(), "-resume", "5", "-quiet"})
	if err == nil || !strings.Contains(err.Error(), wire.ErrCodeGone) || ctx.Err() != nil {
		t.Fatalf("sub -resume 5 on a child starting at 1000: %v (ctx %v), want an ERR %s error at once", err, ctx.Err(), wire.ErrCodeGone)
	}
}

// TestSubCluster: `sub -addr a,b -sub '*'` follows its child's drain to
// the other child, prints the move, and counts no gap and no duplicate.
func TestSubCluster(t *testing.T) {
	_, _, kids := startClusterTier(t, 500, "a", "b")
	waitDirectory(t, kids["a"].addr, 2)
	sub := startProc(t, "sub", "sub", "-addr", kids["a"].addr+","+kids["b"].addr, "-sub", "*", "-quiet", "-stats",
		"-interval", "500ms", "-move-window", "200ms")
	line := sub.waitLog(t, 5*time.Second, "cluster: on ")
	on := kids["a"]
	if strings.Contains(line, kids["b"].addr) {
		on = kids["b"]
	}
	sub.waitLog(t, 5*time.Second, "interval:")
	on.p.signal(syscall.SIGTERM)
	sub.waitLog(t, 10*time.Second, "cluster: moved "+on.addr, "(drain)", "resumed from epoch")
	time.Sleep(time.Second)
	sub.stop(t, 10*time.Second)
	final := sub.waitLog(t, time.Second, "final:")
	if !strings.Contains(final, "gaps 0, duplicates 0") {
		t.Fatalf("final: %q", final)
	}
	sub.waitLog(t, time.Second, "cluster: moves map[drain:1]")
}
