package session

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// TestDisconnectSlow: a client whose unsent bytes pass MaxPending after a
// flush gets ERR SLOW and is closed at once; a client under the limit,
// however often it comes near it, keeps getting everything.
func TestDisconnectSlow(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1000})
	slow, ok := r.open(), r.open()
	r.input(slow, "SUB *")
	r.input(ok, "SUB *")
	slow.lines()
	ok.lines()
	for round := 0; round < 5; round++ {
		ok.pending = 1000 // at the limit, not over it
		r.apply(10)
		r.drain()
		if seqs, _ := frameSeqs(t, ok.lines()); len(seqs) != 10 || ok.cl.Dead() {
			t.Fatalf("round %d: a client at the limit got %v (dead %v)", round, seqs, ok.cl.Dead())
		}
		ok.pending = 0
	}
	slow.lines()
	slow.pending = 1001
	r.apply(10)
	r.drain()
	_, other := frameSeqs(t, slow.lines())
	if len(other) != 1 || !strings.HasPrefix(other[0], "ERR SLOW unsent bytes 1001 over limit 1000") || !slow.closed {
		t.Fatalf("slow client: %q, closed %v", other, slow.closed)
	}
	r.apply(10)
	r.drain()
	if len(slow.lines()) != 0 || testutil.ToFloat64(r.l.m.SlowDisconnect) != 1 || r.l.Clients() != 1 {
		t.Fatal("a cut client was written again, or not counted")
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
	if !r.l.HasStale() {
		t.Fatal("not stale")
	}
	r.apply(40)
	r.drain()
	if got := c.lines(); len(got) != 0 {
		t.Fatalf("a stale client got %q", got)
	}
	c.pending = 251 // not yet down to a quarter
	r.l.Resync()
	if len(c.lines()) != 0 || !r.l.HasStale() {
		t.Fatal("resynced above MaxPending/4")
	}
	c.pending = 250
	r.now += int64(time.Second)
	r.l.Resync()
	seqs, other := frameSeqs(t, c.lines())
	if len(other) != 2 || !strings.HasPrefix(other[0], "ERR CONFLATED ") || other[1] != "OK SUB "+sym+" 80" {
		t.Fatalf("resync: %q", other)
	}
	for _, s := range seqs {
		if s > 80 || feedtest.Sym(s) != sym {
			t.Fatalf("image frame %d (%s)", s, feedtest.Sym(s))
		}
	}
	if len(seqs) == 0 || r.l.HasStale() {
		t.Fatalf("image %v, still stale %v", seqs, r.l.HasStale())
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
	r.now++
	r.l.Resync()
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "ERR SLOW behind for over 2s") || !c.closed {
		t.Fatalf("after SlowTimeout: %q closed %v", got, c.closed)
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
	if !r.l.Input(unread.cl, []byte(lines)) {
		t.Fatal("an unread client asking for 200 histories was not cut")
	}
	limit := r.l.cfg.MaxPending + MaxReadGrace
	if unread.written > limit+2*answer || unread.written < limit-answer {
		t.Fatalf("cut after %d bytes, want about %d (+ ERR SLOW)", unread.written, limit)
	}
}

// TestManyCutLogFew: 500 clients cut in one flush write warnBurst log
// lines, and the next second's first line reports how many were held back;
// every one of them still gets its ERR SLOW and is closed.
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
		if _, other := frameSeqs(t, c.lines()); len(other) != 1 || !strings.HasPrefix(other[0], "ERR SLOW ") || !c.closed {
			t.Fatalf("client %d: %q closed %v", i, other, c.closed)
		}
	}
	if n := strings.Count(logged.String(), "disconnecting slow client"); n != warnBurst {
		t.Fatalf("%d lines for 500 cuts, want %d:\n%s", n, warnBurst, logged.String())
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
