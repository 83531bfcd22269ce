package session

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// frameSeqs returns the seqs of the frame lines in lines, and the other lines.
func frameSeqs(t *testing.T, lines []string) (seqs []uint64, other []string) {
	t.Helper()
	for _, line := range lines {
		if wire.KindOf([]byte(line)) != wire.LineFrame {
			other = append(other, line)
			continue
		}
		var m wire.Msg
		seq, _, err := wire.DecodeTextFrame([]byte(line), &m)
		if err != nil {
			t.Fatalf("frame %q: %v", line, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs, other
}

// TestBehind: a client whose connection holds unsent bytes is not written
// again; the frames due meanwhile are counted, not copied, and once its
// socket drains it catches up from the history, in order, with nothing
// missing or repeated, then takes the live stream again.
func TestBehind(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1 << 20})
	c := r.open()
	r.input(c, "SUB *")
	c.lines()
	c.pending = 1 // its socket took none of the next write
	r.apply(10)
	r.drain()
	got, _ := frameSeqs(t, c.lines())
	r.apply(10)
	r.drain()
	r.apply(10)
	r.drain()
	if n := len(c.lines()); n != 0 || !c.cl.behind || testutil.ToFloat64(r.l.m.Behind) != 1 {
		t.Fatalf("a full socket was written %d lines (behind %v)", n, c.cl.behind)
	}
	if c.cl.backlog < 20*40 {
		t.Fatalf("backlog %d bytes for 20 frames", c.cl.backlog)
	}
	c.pending = 0
	r.l.Tick()
	seqs, _ := frameSeqs(t, c.lines())
	got = append(got, seqs...)
	r.apply(10)
	r.drain()
	seqs, _ = frameSeqs(t, c.lines())
	got = append(got, seqs...)
	if !slices.Equal(got, feedtest.Seqs(0, 40, "*")) || c.cl.behind || testutil.ToFloat64(r.l.m.Behind) != 0 {
		t.Fatalf("got %v, behind %v", got, c.cl.behind)
	}
}

// TestDisconnectSlow: a client whose unsent bytes (held by its connection,
// plus its backlog) pass MaxPending is cut in the flush that counts them:
// ERR SLOW after whole frames, no frame after it, closed once its socket
// took the line, or after SlowLinger when it does not read. A client
// under the limit keeps everything.
func TestDisconnectSlow(t *testing.T) {
	r := newRig(t, Config{MaxPending: 4000, SlowLinger: time.Second})
	slow, ok, gone := r.open(), r.open(), r.open()
	for _, c := range []*testConn{slow, ok, gone} {
		r.input(c, "SUB *")
		c.lines()
	}
	for round := 0; round < 5; round++ {
		ok.pending = 1000
		r.apply(10)
		r.drain()
		ok.pending = 0
		r.l.Tick()
	}
	if seqs, _ := frameSeqs(t, ok.lines()); !slices.Equal(seqs, feedtest.Seqs(0, 50, "*")) || ok.cl.Dead() {
		t.Fatalf("a client under the limit got %v (dead %v)", seqs, ok.cl.Dead())
	}
	slow.lines()
	gone.lines()
	slow.pending, gone.pending = 3000, 3000
	r.apply(10) // the write that leaves them full
	r.drain()
	r.apply(50) // some 2,000 bytes owed: over the limit
	r.drain()
	for _, c := range []*testConn{slow, gone} {
		seqs, other := frameSeqs(t, c.lines())
		if !slices.Equal(seqs, feedtest.Seqs(50, 60, "*")) || len(other) != 1 || !strings.HasPrefix(other[0], "ERR SLOW unsent bytes ") || !c.cl.Dead() {
			t.Fatalf("slow client: %v then %q (dead %v)", seqs, other, c.cl.Dead())
		}
	}
	if slow.closed || testutil.ToFloat64(r.l.m.SlowDisconnect) != 2 || testutil.ToFloat64(r.l.m.Behind) != 0 {
		t.Fatal("closed before its socket took the last line, or not counted")
	}
	slow.pending = 0 // it reads: it has its last line, and is closed
	r.l.Tick()
	if !slow.closed || gone.closed {
		t.Fatalf("closed: drained %v, unread %v", slow.closed, gone.closed)
	}
	r.now += int64(time.Second)
	r.apply(10)
	r.drain()
	if !gone.closed || len(gone.lines()) != 0 || r.l.Clients() != 1 || r.l.NeedsTick() {
		t.Fatal("an unread cut client was not closed after SlowLinger, or was written again")
	}
}

// TestTooFarBehind: a client behind by more than the history holds is cut
// (disconnect) when it comes back, with a reason that says so.
func TestTooFarBehind(t *testing.T) {
	r := &rig{t: t, state: frames.NewShared(frames.NewCore(64, 1<<20)), now: 1e18}
	r.l = NewLoop(Config{MaxPending: 1 << 30, MaxCommandsPerSec: 1000, Now: func() int64 { return r.now },
		Log: slog.New(slog.DiscardHandler)}, r.state, testMetrics())
	c := r.open()
	r.input(c, "SUB *")
	c.pending = 1
	r.apply(1)
	r.drain()
	r.apply(200)
	r.drain()
	c.lines()
	c.pending = 0
	r.l.Tick()
	if _, other := frameSeqs(t, c.lines()); len(other) != 1 || !strings.HasPrefix(other[0], "ERR SLOW behind seq 1, older than the history holds") {
		t.Fatalf("got %q", other)
	}
}

// TestConflateResync: under the conflate policy a client over MaxPending
// gets no frames; once its backlog is down to MaxPending/4 the next Resync
// sends ERR CONFLATED, the images and OK SUB of its subscriptions at P, and
// then every update after P. One still behind after SlowTimeout (on the
// injected clock) is cut.
func TestConflateResync(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1000, Conflate: true, SlowTimeout: 2 * time.Second})
	c := r.open()
	sym := feedtest.Sym(1)
	r.input(c, "SUB "+sym)
	c.lines()
	c.pending = 5000
	r.apply(40)
	r.drain() // the write that finds it over the limit: it goes stale
	c.lines()
	if !c.cl.stale || !r.l.NeedsTick() {
		t.Fatal("not stale")
	}
	r.apply(40)
	r.drain()
	if got := c.lines(); len(got) != 0 {
		t.Fatalf("a stale client got %q", got)
	}
	c.pending = 1 // its socket has not taken everything yet
	r.l.Resync()
	if len(c.lines()) != 0 || !c.cl.stale {
		t.Fatal("resynced with bytes unsent")
	}
	c.pending, c.queued = 0, 30<<10 // drained into a small send buffer it does not read
	for range 3 {
		r.l.Resync()
		if len(c.lines()) != 0 || !c.cl.stale {
			t.Fatal("resynced with its small kernel queue standing still")
		}
		r.now += resyncPoll
	}
	c.queued = 29 << 10 // its peer's kernel took a few bytes: not reading
	r.l.Resync()
	if len(c.lines()) != 0 || !c.cl.stale {
		t.Fatal("resynced when its kernel queue shrank by 1 KiB")
	}
	r.now += resyncPoll
	if e := r.l.f.index[c.cl.hashes[0]]; len(e) != 1 || e[0].from != parked {
		t.Fatalf("a stale client's subscription is not parked: %+v", e)
	}
	c.queued = 100 << 10 // a big one
	r.l.Resync()
	if len(c.lines()) != 0 || !c.cl.stale {
		t.Fatal("resynced with its kernel queue full")
	}
	c.queued = 20 << 10
	r.l.Resync() // the kernel queue is asked again only after resyncPoll
	if len(c.lines()) != 0 || !c.cl.stale {
		t.Fatal("kernel queue asked again at once")
	}
	r.now += int64(time.Second)
	r.l.Resync() // it shrank: the peer reads
	seqs, other := frameSeqs(t, c.lines())
	if len(other) != 2 || !strings.HasPrefix(other[0], "ERR CONFLATED ") || other[1] != "OK SUB "+sym+" 80 0" {
		t.Fatalf("resync: %q", other)
	}
	for _, s := range seqs {
		if s > 80 || feedtest.Sym(s) != sym {
			t.Fatalf("image frame %d (%s)", s, feedtest.Sym(s))
		}
	}
	if len(seqs) == 0 || c.cl.stale || r.l.NeedsTick() {
		t.Fatalf("image %v, still stale %v", seqs, c.cl.stale)
	}
	r.apply(40)
	r.drain()
	if seqs, _ := frameSeqs(t, c.lines()); len(seqs) != len(feedtest.Seqs(80, 120, sym)) {
		t.Fatalf("after the resync: %v, want %v", seqs, feedtest.Seqs(80, 120, sym))
	}

	// Stale again, and never catching up: cut after SlowTimeout.
	c.pending = 5000
	r.apply(40)
	r.drain()
	c.lines()
	r.now += int64(2 * time.Second)
	r.l.Resync()
	if c.closed {
		t.Fatal("cut before SlowTimeout")
	}
	r.now += resyncScan
	r.l.Resync()
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "ERR SLOW behind for over 2s") || !c.cl.Dead() {
		t.Fatalf("after SlowTimeout: %q dead %v", got, c.cl.Dead())
	}
	r.now += int64(DefaultSlowLinger)
	r.l.Tick()
	if !c.closed {
		t.Fatal("not closed after SlowLinger")
	}
}

// TestPipelinedReplies: 200 "RESUME 1 *" lines in one read from a client
// that reads nothing. Each answer is written (and counted) before the next
// line runs; the answers share a grace of MaxReadGrace, so the client is
// cut once they pass MaxPending plus that grace, not after all 200. A
// client that reads gets all 200.
func TestPipelinedReplies(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1 << 20})
	r.apply(20000)
	r.drain()
	lines := strings.Repeat("RESUME 1 *\n", 200)

	reading := r.open()
	reading.keep = false
	r.l.Input(reading.cl, []byte(lines))
	answer := reading.written / 200
	if reading.cl.Dead() || answer < replyFlushAt {
		t.Fatalf("reading client: dead %v, answers of %d bytes", reading.cl.Dead(), answer)
	}

	unread := r.open()
	unread.keep, unread.unread = false, true
	if r.l.Input(unread.cl, []byte(lines)) || !unread.cl.Dead() {
		t.Fatal("an unread client asking for 200 histories was not cut (or not left to linger)")
	}
	limit := r.l.cfg.MaxPending + MaxReadGrace
	if unread.written > limit+2*answer || unread.written < limit-answer {
		t.Fatalf("cut after %d bytes, want about %d (+ ERR SLOW)", unread.written, limit)
	}
}

// TestManyCutLogFew: 500 clients cut in one flush write warnBurst log
// lines, and the next second's first line reports how many were held back;
// every one of them gets its ERR SLOW, and they are closed closesPerPass
// per pass, not all in one.
func TestManyCutLogFew(t *testing.T) {
	var logged bytes.Buffer
	r := newRig(t, Config{MaxPending: 1000, Log: slog.New(slog.NewTextHandler(&logged, nil))})
	var conns []*testConn
	for range 500 {
		c := r.open()
		r.input(c, "SUB *")
		c.lines()
		c.pending = 2000
		conns = append(conns, c)
	}
	r.apply(5)
	r.drain()
	for i, c := range conns {
		if _, other := frameSeqs(t, c.lines()); len(other) != 1 || !strings.HasPrefix(other[0], "ERR SLOW ") || !c.cl.Dead() {
			t.Fatalf("client %d: %q dead %v", i, other, c.cl.Dead())
		}
		c.pending = 0 // they read their last lines
	}
	if n := strings.Count(logged.String(), "disconnecting slow client"); n != warnBurst {
		t.Fatalf("%d lines for 500 cuts, want %d:\n%s", n, warnBurst, logged.String())
	}
	for pass := 1; r.l.Clients() > 0; pass++ {
		r.l.Tick()
		if want := max(500-pass*closesPerPass, 0); r.l.Clients() != want {
			t.Fatalf("pass %d: %d clients open, want %d", pass, r.l.Clients(), want)
		}
	}
	r.now += int64(time.Second)
	c := r.open()
	r.input(c, "SUB *")
	c.pending = 2000
	r.apply(5)
	r.drain()
	if !strings.Contains(logged.String(), `msg="per-client log lines suppressed" count=490`) {
		t.Fatalf("no summary of the held-back lines:\n%s", logged.String())
	}
}

// TestConflateResyncAll: a stale "*" client's resync is streamed like SUB
// *: ERR CONFLATED, the images, the updates after them, then OK SUB * P
// where it levels, then every update after P.
func TestConflateResyncAll(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1000, Conflate: true, SlowTimeout: 2 * time.Second})
	c := r.open()
	r.input(c, "SUB *")
	r.drain()
	c.lines()
	c.pending = 5000
	r.apply(40)
	r.drain()
	if !c.cl.stale {
		t.Fatal("not stale")
	}
	c.lines()
	r.apply(40)
	r.drain()
	c.pending = 0
	r.now += resyncScan
	r.l.Resync()
	r.drain() // the passes over the clients behind stream it
	r.apply(40)
	r.drain()
	seqs, other := frameSeqs(t, c.lines())
	if len(other) != 2 || !strings.HasPrefix(other[0], "ERR CONFLATED ") || !strings.HasPrefix(other[1], "OK SUB * ") {
		t.Fatalf("resync: %q", other)
	}
	if n := len(seqs); n == 0 || seqs[n-1] != 120 {
		t.Fatalf("frames after ERR CONFLATED end at %v, want 120", seqs)
	}
	if c.cl.stale || c.cl.behind {
		t.Fatal("still stale or behind")
	}
}
