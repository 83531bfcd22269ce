package session

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tickrelay/entitle"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// entRig is a rig whose loop has an entitlements table: alice may see
// codes 1..5, desk everything.
func entRig(t *testing.T, cfg Config) (*rig, *atomic.Pointer[entitle.Table]) {
	var tab atomic.Pointer[entitle.Table]
	tab.Store(parseTable(t, "alice alice-token-1 1-5\ndesk desk-token-1 *\n"))
	cfg.Entitlements, cfg.AuthTimeout = tab.Load, time.Second
	return newRig(t, cfg), &tab
}

func parseTable(t *testing.T, s string) *entitle.Table {
	t.Helper()
	tab, err := entitle.Parse(strings.NewReader(s), "ent")
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// codesOf returns the symbol codes of the frames among lines.
func codesOf(t *testing.T, lines []string) map[uint32]int {
	t.Helper()
	out := map[uint32]int{}
	for _, line := range lines {
		if wire.KindOf([]byte(line)) == wire.LineFrame {
			code, _ := wire.TextFrameCode([]byte(line))
			out[code]++
		}
	}
	return out
}

func allowedOnly(t *testing.T, what string, codes map[uint32]int, max uint32) {
	t.Helper()
	if len(codes) == 0 {
		t.Fatalf("%s: no frames", what)
	}
	for c := range codes {
		if c < 1 || c > max {
			t.Fatalf("%s: a frame of symbol %d (grant 1..%d): %v", what, c, max, codes)
		}
	}
}

func TestAuthGate(t *testing.T) {
	r, _ := entRig(t, Config{})
	c := r.open()
	if !r.input(c, "SUB 00001") || c.lines()[0] != "ERR AUTH AUTH token first" {
		t.Fatal("a SUB before AUTH was not refused and closed")
	}
	c = r.open()
	if !r.input(c, "AUTH wrong-token") || c.lines()[0] != "ERR AUTH unknown token" {
		t.Fatal("a bad token was not refused and closed")
	}
	for _, bad := range []string{"AUTH " + strings.Repeat("t", 300), "AUTH to\x01ken", "AUTH a b"} {
		c = r.open()
		if !r.input(c, bad) || !strings.HasPrefix(c.lines()[0], "ERR AUTH ") {
			t.Fatalf("%.20q before AUTH was not refused and closed", bad)
		}
	}
	c = r.open()
	if !r.input(c, "garbage") || c.lines()[0] != "ERR AUTH AUTH token first" {
		t.Fatal("a garbage line before AUTH was not refused and closed")
	}
	c = r.open()
	if r.input(c, "AUTH alice-token-1") || c.lines()[0] != "OK AUTH alice" || c.cl.Identity() != "alice" {
		t.Fatal("AUTH alice")
	}
	r.input(c, "AUTH alice-token-1")
	r.input(c, "AUTH")
	if got := c.lines(); got[0] != "ERR BADARG already authenticated" || !strings.HasPrefix(got[1], "ERR BADARG bad token") && !strings.HasPrefix(got[1], "ERR BADARG AUTH needs") {
		t.Fatalf("AUTH twice, AUTH without a token: %q", got)
	}
	if c.cl.Dead() {
		t.Fatal("closed after a second AUTH")
	}
	// A client that never AUTHs is closed after the timeout.
	quiet := r.open()
	r.now += int64(500 * time.Millisecond)
	r.l.Tick()
	if quiet.closed {
		t.Fatal("closed before the auth timeout")
	}
	r.now += int64(600 * time.Millisecond)
	if !r.l.NeedsTick() {
		t.Fatal("an unauthenticated client does not keep the ticker on")
	}
	r.l.Tick()
	if !quiet.closed || quiet.lines()[0] != "ERR AUTH no AUTH within 1s" || c.closed {
		t.Fatal("the auth timeout")
	}
	if r.l.Tick(); r.l.NeedsTick() {
		t.Fatal("the ticker stays on with every client authenticated")
	}
}

// TestGrant: a named SUB outside the grant is denied as one that does not
// exist is; SUB *'s image and updates, RESUME * and a conflated resync give
// only granted symbols.
func TestGrant(t *testing.T) {
	r, _ := entRig(t, Config{MaxPending: 1000, Conflate: true, SlowTimeout: 5 * time.Second})
	r.apply(200)
	r.drain()
	c := r.open()
	r.input(c, "AUTH alice-token-1")
	r.input(c, "SUB 00003 00009 99999")
	lines := c.lines()
	if !contains(lines, "ERR DENIED 00009") || !contains(lines, "ERR DENIED 99999") || !prefixed(lines, "OK SUB 00003 200 ") {
		t.Fatalf("named SUB: %q", lines)
	}
	allowedOnly(t, "image of 00003", codesOf(t, lines), 3)

	all := r.open()
	r.input(all, "AUTH alice-token-1")
	r.input(all, "SUB *")
	r.drain()
	r.apply(100)
	r.drain()
	allowedOnly(t, "SUB *", codesOf(t, all.lines()), 5)

	res := r.open()
	r.input(res, "AUTH alice-token-1")
	r.input(res, "RESUME 50 *")
	lines = res.lines()
	allowedOnly(t, "RESUME 50 *", codesOf(t, lines), 5)
	if n := codesOf(t, lines); n[1] == 0 {
		t.Fatalf("RESUME * has no frame of 00001: %v", n)
	}

	// Conflation: the resync's image is filtered too.
	all.pending = 5000
	r.apply(40)
	r.drain()
	if !all.cl.stale {
		t.Fatal("not stale")
	}
	all.lines()
	all.pending = 0
	r.now += resyncScan
	r.l.Resync()
	r.drain()
	r.apply(40)
	r.drain()
	lines = all.lines()
	if !prefixed(lines, "ERR CONFLATED ") {
		t.Fatalf("no resync: %q", lines[:min(len(lines), 3)])
	}
	allowedOnly(t, "conflated resync", codesOf(t, lines), 5)

	desk := r.open()
	r.input(desk, "AUTH desk-token-1")
	r.input(desk, "SUB *")
	r.drain()
	if n := len(codesOf(t, desk.lines())); n != feedtest.Symbols {
		t.Fatalf("desk (*) got %d symbols, want %d", n, feedtest.Symbols)
	}
}

// TestReentitle: a reload that revokes symbols tells their subscribers
// ERR DENIED sym revoked, and no frame of them follows; one that removes
// the token revokes everything; nobody is closed.
func TestReentitle(t *testing.T) {
	r, tab := entRig(t, Config{})
	r.apply(100)
	r.drain()
	named, all := r.open(), r.open()
	for _, c := range []*testConn{named, all} {
		r.input(c, "AUTH alice-token-1")
	}
	r.input(named, "SUB 00002 00004")
	r.input(all, "SUB *")
	r.drain()
	named.lines()
	all.lines()
	tab.Store(parseTable(t, "alice alice-token-1 1-3\n"))
	r.l.Reentitle()
	if got := named.lines(); len(got) != 1 || got[0] != "ERR DENIED 00004 revoked" {
		t.Fatalf("named after the reload: %q", got)
	}
	if got := all.lines(); len(got) != 2 || got[0] != "ERR DENIED 00004 revoked" || got[1] != "ERR DENIED 00005 revoked" {
		t.Fatalf("* after the reload: %q", got)
	}
	r.apply(100)
	r.drain()
	if n := codesOf(t, named.lines()); len(n) != 1 || n[2] == 0 {
		t.Fatalf("named after the reload got %v, want only 00002", n)
	}
	allowedOnly(t, "* after the reload", codesOf(t, all.lines()), 3)
	tab.Store(parseTable(t, "desk desk-token-1 *\n"))
	r.l.Reentitle()
	r.apply(100)
	r.drain()
	if got := named.lines(); len(got) != 1 || got[0] != "ERR DENIED 00002 revoked" || named.closed || all.closed {
		t.Fatalf("token removed: %q", got)
	}
	if n := codesOf(t, all.lines()); len(n) != 0 {
		t.Fatalf("frames after the token went: %v", n)
	}
}

// TestLimits: the command rate answers ERR BUSY retry= and the connection
// lives; MaxSubs answers ERR LIMIT past the cap; an overloaded loop
// answers SUB and RESUME ERR BUSY.
func TestLimits(t *testing.T) {
	overloaded := false
	r := newRig(t, Config{CmdRate: 10, CmdBurst: 3, MaxSubs: 2, Overloaded: func() bool { return overloaded }})
	c := r.open()
	if r.input(c, "PING\nPING\nPING\nPING\nPING") {
		t.Fatal("closed by the command rate")
	}
	got := c.lines()
	if len(got) != 5 || got[2] != "PONG" || got[3] != "ERR BUSY retry=100" || got[4] != "ERR BUSY retry=100" {
		t.Fatalf("5 PINGs at a rate of 10/s, burst 3: %q", got)
	}
	r.now += int64(300 * time.Millisecond)
	r.input(c, "SUB 1 2 3")
	got = c.lines()
	if !contains(got, "ERR LIMIT 00003: at most 2 subscriptions") || !prefixed(got, "OK SUB 00001 ") || !prefixed(got, "OK SUB 00002 ") {
		t.Fatalf("SUB of 3 with MaxSubs 2: %q", got)
	}
	r.input(c, "SUB 2")
	if got := c.lines(); !prefixed(got, "OK SUB 00002 ") {
		t.Fatalf("re-SUB of a held symbol at the cap: %q", got)
	}
	overloaded = true
	r.now += int64(time.Second)
	r.input(c, "UNSUB 1")
	r.input(c, "SUB 1")
	r.input(c, "RESUME 1 2")
	if got := c.lines(); len(got) != 3 || got[0] != "OK UNSUB 00001" || got[1] != "ERR BUSY retry=1000" || got[2] != "ERR BUSY retry=1000" {
		t.Fatalf("overloaded: %q", got)
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func prefixed(lines []string, p string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}
