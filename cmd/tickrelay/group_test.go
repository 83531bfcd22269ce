package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/child/cluster"
	"tickrelay/feed"
	"tickrelay/wire"
)

// groupMember is one queue-group member under test: the seq its share
// starts after, and the seqs it got.
type groupMember struct {
	c        *client.Client
	mu       sync.Mutex
	after    uint64
	ok       bool
	subOK    uint64 // the highest seq of its OK SUB lines
	left     bool   // OK UNSUB GROUP seen
	sub      string // its SUB line, sent again after ERR BUSY (the child's root line not up yet)
	ackEvery int    // ack mode: ACK the last seq every this many frames
	acked    uint64 // the last seq it ACKed
	seqs     []uint64
	syms     map[uint32]uint64 // last seq per symbol (order check)
	bad      string
}

func (m *groupMember) read() {
	for {
		ev, err := m.c.Next()
		if err != nil {
			return
		}
		m.mu.Lock()
		switch ev.Kind {
		case wire.LineOK:
			if f := strings.Fields(string(ev.Line)); len(f) == 6 && f[1] == "GROUP" {
				m.after, _ = strconv.ParseUint(f[4], 10, 64)
				m.ok = true
			} else if strings.HasPrefix(string(ev.Line), "OK UNSUB GROUP ") {
				m.left = true
			} else if _, _, seq, err := ev.OK(); err == nil {
				m.subOK = max(m.subOK, seq)
			}
		case wire.LineFrame:
			m.seqs = append(m.seqs, ev.Seq)
			if m.ackEvery > 0 && len(m.seqs)%m.ackEvery == 0 {
				if m.c.SendLine("ACK "+strconv.FormatUint(ev.Seq, 10)) == nil {
					m.acked = ev.Seq
				}
			}
			if last := m.syms[ev.Msg.Security]; ev.Seq <= last && m.bad == "" {
				m.bad = fmt.Sprintf("symbol %d: seq %d after %d", ev.Msg.Security, ev.Seq, last)
			}
			m.syms[ev.Msg.Security] = ev.Seq
		case wire.LineErr:
			if code, _ := ev.Err(); code == wire.ErrCodeBusy && m.sub != "" {
				go func() { time.Sleep(100 * time.Millisecond); m.c.SendLine(m.sub) }()
				break
			}
			m.bad = string(ev.Line)
		}
		m.mu.Unlock()
	}
}

// twoChildren runs a root on ex and children a and b on it.
func twoChildren(t *testing.T, ex *feed.Server) []*child.Child {
	t.Helper()
	r, _ := startRoot(t, newRootConfig(ex.Addr()))
	var kids []*child.Child
	for _, n := range []string{"a", "b"} {
		ch, _ := startChild(t, r.Addr(), n, 1)
		<-ch.Ready()
		kids = append(kids, ch)
	}
	return kids
}

// dialMember connects a group member to the child at addr and sends sub
// (again after ERR BUSY); ackEvery > 0 ACKs every that many frames.
func dialMember(t *testing.T, addr, sub string, ackEvery int) *groupMember {
	t.Helper()
	c, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &groupMember{c: c, syms: map[uint32]uint64{}, ackEvery: ackEvery, sub: sub}
	if err := c.SendLine(sub); err != nil {
		t.Fatal(err)
	}
	go m.read()
	return m
}

// allJoined reports whether every member's join took effect.
func allJoined(ms ...*groupMember) bool {
	for _, m := range ms {
		m.mu.Lock()
		ok := m.ok
		m.mu.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// TestQueueGroup: a group of 6 members, 3 on each of 2 children, SUB *
// GROUP g over a 20k msgs/s feed: every seq after the first join reaches
// exactly one member, in seq order per symbol; a second group (rr, 4
// members) at once shares every item evenly (±20%); a plain subscriber of
// the same symbols gets all of them.
// Halfway a member leaves: the seqs lost are those the group gave it
// before its leave took effect, counted by its child.
//
// With TICKRELAY_GROUPS_FULL=1 (make groups-scale) it runs 20 s (400k
// items) instead of 3. The feed's symbols are near even (a flat Zipf) so
// that by-symbol shares can be held to ±20% of the mean too.
func TestQueueGroup(t *testing.T) {
	total := uint64(60000)
	if os.Getenv("TICKRELAY_GROUPS_FULL") != "" {
		total = 400000
	}
	ex := startExchange(t, 20000, 2000, total, func(c *feed.Config) { c.ZipfV = 5000 })
	kids := twoChildren(t, ex)
	dial := func(ch *child.Child, line string) *groupMember { return dialMember(t, ch.Addr().String(), line, 0) }
	var g, h []*groupMember
	for i := range 6 {
		g = append(g, dial(kids[i%2], "SUB * GROUP g"))
	}
	for i := range 4 {
		h = append(h, dial(kids[i%2], "SUB * GROUP h rr"))
	}
	plain := dial(kids[0], "SUB 00001 00002 00003")
	waitFor(t, "every member's join in effect", 10*time.Second, func() bool { return allJoined(append(g, h...)...) })
	// Halfway, member 0 leaves (and reads on to its OK, so that nothing
	// is in flight to it: a member that just closes loses that too).
	waitFor(t, "half the feed", 30*time.Second, func() bool { return ex.Published() >= total/2 })
	leaveAt := ex.Published() // every member of g has its share until at least here
	g[0].c.SendLine("UNSUB * GROUP g")
	waitFor(t, "member 0's leave", 5*time.Second, func() bool {
		g[0].mu.Lock()
		defer g[0].mu.Unlock()
		return g[0].left
	})
	waitFor(t, "the feed's end through every child", 30*time.Second, func() bool {
		return kids[0].LastSeq() >= total && kids[1].LastSeq() >= total
	})
	time.Sleep(500 * time.Millisecond) // the last frames reach the members

	first, joined := total, uint64(0)
	for _, m := range g {
		first, joined = min(first, m.after), max(joined, m.after)
	}
	got := map[uint64]int{}
	var shares []int
	for i, m := range g {
		m.mu.Lock()
		if m.bad != "" {
			t.Fatalf("member %d: %s", i, m.bad)
		}
		n := 0
		for _, s := range m.seqs {
			got[s]++
			if s > joined && s <= leaveAt {
				n++
			}
		}
		shares = append(shares, n)
		m.mu.Unlock()
	}
	gmean := float64(leaveAt-joined) / float64(len(g))
	for i, n := range shares {
		if float64(n) < 0.8*gmean || float64(n) > 1.2*gmean {
			t.Errorf("group g member %d's share %d of seqs %d..%d is outside ±20%% of the mean %.0f", i, n, joined+1, leaveAt, gmean)
		}
	}
	lost := 0.0
	for _, k := range kids {
		lost += testutil.ToFloat64(k.Metrics().GroupLost.WithLabelValues("g"))
	}
	missing, twice := 0, 0
	for s := first + 1; s <= total; s++ {
		switch got[s] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	t.Logf("group g: shares %v of seqs %d..%d (then member 0 left), %d missing, %d lost counted", shares, joined+1, leaveAt, missing, int(lost))
	if twice > 0 {
		t.Fatalf("%d seqs reached two members", twice)
	}
	if float64(missing) != lost {
		t.Fatalf("%d seqs missing, %v counted lost: a dropped member's loss must be counted, and nothing else lost", missing, lost)
	}
	// Group h (rr) shares every item after its last join: exactly once,
	// evenly (within ±20% of the mean); the plain client gets all of its.
	hs := map[uint64]int{}
	var hshare []int
	after := uint64(0)
	for _, m := range h {
		m.mu.Lock()
		after = max(after, m.after)
		m.mu.Unlock()
	}
	for _, m := range h {
		m.mu.Lock()
		n := 0
		for _, s := range m.seqs {
			hs[s]++
			if s > after {
				n++
			}
		}
		hshare = append(hshare, n)
		m.mu.Unlock()
	}
	for s := after + 1; s <= total; s++ {
		if hs[s] != 1 {
			t.Fatalf("group h: seq %d delivered %d times", s, hs[s])
		}
	}
	mean := float64(total-after) / float64(len(h))
	for i, n := range hshare {
		if float64(n) < 0.8*mean || float64(n) > 1.2*mean {
			t.Errorf("group h member %d's share %d is outside ±20%% of the mean %.0f", i, n, mean)
		}
	}
	t.Logf("group h (rr): shares %v of %d", hshare, total-after)
	plain.mu.Lock()
	ps := 0
	for _, s := range plain.seqs {
		if s > plain.subOK {
			ps++
		}
	}
	from := plain.subOK
	plain.mu.Unlock()
	if want := len(expectedAfter(ex, from, total)); ps != want {
		t.Fatalf("the plain client got %d frames of its symbols, want %d", ps, want)
	}
}

// expectedAfter is the seqs of symbols 1..3 the exchange published
// after from, up to total.
func expectedAfter(ex interface{ Body(uint64) ([]byte, bool) }, from, total uint64) []uint64 {
	var out []uint64
	for s := from + 1; s <= total; s++ {
		body, _ := ex.Body(s)
		if code, _ := wire.SecurityOf(body); code >= 1 && code <= 3 {
			out = append(out, s)
		}
	}
	return out
}

// TestQueueGroupRootRestart: the sequencing root restarts (a new era,
// knowing no member): the child takes its snapshot, its members join
// again (a second OK GROUP), and their frames resume.
func TestQueueGroupRootRestart(t *testing.T) {
	ex := startExchange(t, 2000, 20, 0)
	cfg := newRootConfig(ex.Addr())
	cfg.Addr = freeAddr(t)
	r, stop := startRoot(t, cfg)
	ch, _ := startChild(t, r.Addr(), "a", 1)
	<-ch.Ready()
	c, err := client.Dial(t.Context(), ch.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SendLine("SUB * GROUP g")
	oks, frames := 0, 0 // an ERR BUSY (its root line not up yet) is answered by sending the SUB again
	read := func(until func() bool) {
		t.Helper()
		c.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
		for !until() {
			ev, err := c.Next()
			if err != nil {
				t.Fatalf("after %d OK GROUP, %d frames: %v", oks, frames, err)
			}
			switch {
			case strings.HasPrefix(string(ev.Line), "ERR BUSY "):
				time.Sleep(100 * time.Millisecond)
				c.SendLine("SUB * GROUP g")
			case strings.HasPrefix(string(ev.Line), "OK GROUP g "):
				oks, frames = oks+1, 0
			case ev.Kind == wire.LineFrame:
				frames++
			}
		}
	}
	read(func() bool { return oks == 1 && frames > 100 })
	stop()
	startRoot(t, cfg)
	read(func() bool { return oks == 2 && frames > 100 })
}

// TestQueueGroupAck: two ack members (one on each child); one ACKs every
// 100 frames and then closes mid-feed without a word: its unacknowledged
// items (delivered after its last ACK, or owned and never sent) go to the
// other after a REDELIVER line, so every seq after their joins reaches the
// group: what the first ACKed, or the second got.
func TestQueueGroupAck(t *testing.T) {
	const total = 40000
	ex := startExchange(t, 20000, 200, total)
	kids := twoChildren(t, ex)
	ms := []*groupMember{dialMember(t, kids[0].Addr().String(), "SUB * GROUP k ack", 100), dialMember(t, kids[1].Addr().String(), "SUB * GROUP k ack", 100)}
	waitFor(t, "both joins in effect", 10*time.Second, func() bool { return allJoined(ms...) })
	waitFor(t, "half the feed", 10*time.Second, func() bool { return ex.Published() >= total/2 })
	ms[0].mu.Lock()
	ms[0].c.Close() // abruptly: what is in flight to it is lost to it, not to the group
	ms[0].mu.Unlock()
	waitFor(t, "the feed's end through both children", 15*time.Second, func() bool {
		return kids[0].LastSeq() >= total && kids[1].LastSeq() >= total
	})
	time.Sleep(500 * time.Millisecond)
	got := map[uint64]bool{}
	ms[0].mu.Lock()
	for _, s := range ms[0].seqs {
		if s <= ms[0].acked {
			got[s] = true
		}
	}
	acked, start := ms[0].acked, max(ms[0].after, ms[1].after)
	ms[0].mu.Unlock()
	ms[1].mu.Lock()
	for _, s := range ms[1].seqs {
		got[s] = true
	}
	ms[1].mu.Unlock()
	missing := 0
	for s := start + 1; s <= total; s++ {
		if !got[s] {
			missing++
		}
	}
	re := testutil.ToFloat64(kids[1].Metrics().GroupRedeliver.WithLabelValues("k"))
	t.Logf("member 0 acked up to %d and closed; %v redelivered to member 1; %d missing", acked, re, missing)
	if missing > 0 || re == 0 {
		t.Fatalf("%d seqs reached neither (redelivered %v)", missing, re)
	}
	if lost := testutil.ToFloat64(kids[0].Metrics().GroupLost.WithLabelValues("k")) + testutil.ToFloat64(kids[1].Metrics().GroupLost.WithLabelValues("k")); lost != 0 {
		t.Fatalf("%v counted lost in an ack group", lost)
	}
}

// TestQueueGroupChildKilled: 4 ack members, 2 on each of 2 child
// processes; one child is SIGKILLed mid-feed and its members join again
// on the other. The root sequences the dead child's members' leaves from
// their join points (their last ACKs died with it), so the members left
// get their items again: every seq after the joins reaches the group
// (at least once).
func TestQueueGroupChildKilled(t *testing.T) {
	const total = 30000
	ex := startExchange(t, 10000, 100, total)
	r, _ := startRoot(t, newRootConfig(ex.Addr()))
	kids := []*clusterChild{startClusterChild(t, r.Addr(), "a", freeAddr(t)), startClusterChild(t, r.Addr(), "b", freeAddr(t))}
	const sub = "SUB * GROUP k ack"
	join := func(addr string) *groupMember { return dialMember(t, addr, sub, 50) }
	var ms []*groupMember
	for i := range 4 {
		ms = append(ms, join(kids[i%2].addr))
	}
	waitFor(t, "the joins in effect", 10*time.Second, func() bool { return allJoined(ms...) })
	waitFor(t, "a third of the feed", 10*time.Second, func() bool { return ex.Published() >= total/3 })
	kids[0].p.kill9(t)
	again := []*groupMember{join(kids[1].addr), join(kids[1].addr)}
	waitFor(t, "the members back, on b", 10*time.Second, func() bool { return allJoined(again...) })
	waitFor(t, "the feed's end", 15*time.Second, func() bool { return ex.Published() >= total })
	time.Sleep(time.Second)
	start := uint64(0)
	got := map[uint64]bool{}
	for i, m := range append(ms, again...) {
		m.mu.Lock()
		if i < 4 {
			start = max(start, m.after)
		}
		for _, s := range m.seqs {
			if i%2 == 1 || i >= 4 || s <= m.acked { // a's members count only what they ACKed
				got[s] = true
			}
		}
		m.mu.Unlock()
	}
	missing := 0
	for s := start + 1; s <= total; s++ {
		if !got[s] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d seqs after the joins reached no member", missing)
	}
}

// clusterMember is a queue-group member through the cluster client: the
// frames it handed on (seq and symbol), ACKing every 50.
type clusterMember struct {
	cl     *cluster.Client
	mu     sync.Mutex
	after  uint64 // its first OK GROUP's seq
	okLine string
	seqs   map[uint64]uint32
	last   map[uint32]uint64
	bad    string
	moves  []string // OnMove's, from Next
	on     string   // the child it is on
}

func (m *clusterMember) run(ctx context.Context) {
	for n := 1; ; n++ {
		ev, err := m.cl.Next(ctx)
		if err != nil {
			return
		}
		m.mu.Lock()
		switch ev.Kind {
		case wire.LineOK:
			if f := strings.Fields(string(ev.Line)); len(f) == 6 && f[1] == wire.KeywordGroup && m.okLine == "" {
				m.okLine, m.after = string(ev.Line), mustUint(f[4])
			} else if m.bad == "" {
				m.bad = "a second OK: " + string(ev.Line)
			}
		case wire.LineFrame:
			sym := ev.Msg.Security
			if ev.Seq <= m.last[sym] && m.bad == "" {
				m.bad = fmt.Sprintf("symbol %d: seq %d after %d", sym, ev.Seq, m.last[sym])
			}
			m.last[sym], m.seqs[ev.Seq] = ev.Seq, sym
			if n%50 == 0 {
				m.cl.Ack(ev.Seq)
			}
		default:
			if m.bad == "" {
				m.bad = string(ev.Line)
			}
		}
		m.mu.Unlock()
	}
}

func mustUint(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }

// TestQueueGroupClusterMove: 6 ack members through the cluster client
// (identities m0..m5) on 2 child processes; the child with the most is
// SIGKILLed mid-feed. Its members move to the other child as the same
// members and keep their places: each symbol's items go to one member for
// the whole run, and every seq after the joins reaches the group's
// callers exactly once (the child redelivers what they had not ACKed;
// the client drops what they had).
func TestQueueGroupClusterMove(t *testing.T) {
	const total = 30000
	ex := startExchange(t, 5000, 60, total)
	cfg := newRootConfig(ex.Addr())
	cfg.AnnounceEvery = 100 * time.Millisecond
	rt, _ := startRoot(t, cfg)
	kids := map[string]*clusterChild{}
	for _, n := range []string{"a", "b"} {
		kids[n] = startClusterChild(t, rt.Addr(), n, freeAddr(t))
	}
	waitDirectory(t, kids["a"].addr, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ms []*clusterMember
	on := map[string]int{}
	for i := range 6 {
		m := &clusterMember{seqs: map[uint64]uint32{}, last: map[uint32]uint64{}}
		cl, err := cluster.Dial(ctx, cluster.Config{Seeds: []string{kids["a"].addr, kids["b"].addr}, ID: fmt.Sprintf("m%d", i),
			MoveWindow: 100 * time.Millisecond, Heartbeat: 300 * time.Millisecond,
			OnMove: func(mv cluster.Move) {
				m.mu.Lock()
				m.moves, m.on = append(m.moves, moveText(mv)), mv.To
				m.mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		if err := cl.SubGroup(cluster.Group{Name: "cg", Ack: true}, "*"); err != nil {
			t.Fatal(err)
		}
		if err := cl.Sub("00001"); err == nil {
			t.Fatal("a group member subscribed plainly too")
		}
		on[cl.Child().Addr]++
		m.cl, m.on = cl, cl.Child().Addr
		ms = append(ms, m)
		go m.run(ctx)
	}
	waitFor(t, "every join in effect", 10*time.Second, func() bool {
		for _, m := range ms {
			m.mu.Lock()
			ok := m.okLine != ""
			m.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
	for i, m := range ms {
		if want := fmt.Sprintf("OK GROUP cg m%d ", i); !strings.HasPrefix(m.okLine, want) {
			t.Fatalf("member %d: %q", i, m.okLine)
		}
	}
	victim, other := "a", "b"
	if on[kids["b"].addr] > on[kids["a"].addr] {
		victim, other = "b", "a"
	}
	waitFor(t, "a third of the feed", 10*time.Second, func() bool { return ex.Published() >= total/3 })
	kids[victim].p.kill9(t)
	waitFor(t, "the feed's end", 20*time.Second, func() bool { return ex.Published() >= total })
	// Until every member is on the live child and the last seq came (if
	// it does not, the check below says what is missing).
	settled := func() bool {
		got := map[uint64]bool{}
		for _, m := range ms {
			m.mu.Lock()
			if m.on != kids[other].addr {
				m.mu.Unlock()
				return false
			}
			for s := range m.seqs {
				got[s] = true
			}
			m.mu.Unlock()
		}
		return got[total]
	}
	for deadline := time.Now().Add(10 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	time.Sleep(100 * time.Millisecond)
	start := uint64(0) // every join in effect after it
	for _, m := range ms {
		start = max(start, m.after)
	}
	got := map[uint64]int{}
	owner := map[uint32]int{}
	moves, dups := 0, 0
	for i, m := range ms {
		m.mu.Lock()
		if m.bad != "" {
			t.Fatalf("member %d: %s", i, m.bad)
		}
		for s, sym := range m.seqs {
			got[s]++
			if s <= start {
				continue
			}
			if o, ok := owner[sym]; ok && o != i {
				t.Fatalf("symbol %d went to members %d and %d: a member that moved lost its place", sym, o, i)
			}
			owner[sym] = i
		}
		m.mu.Unlock()
		st := m.cl.Stats()
		moves += st.Moves[cluster.ReasonDead]
		dups += st.Duplicates
	}
	for s := start + 1; s <= total; s++ {
		if got[s] != 1 {
			body, _ := ex.Body(s)
			code, _ := wire.SecurityOf(body)
			o := owner[code]
			m := ms[o]
			var near []uint64
			for q, sym := range m.seqs {
				if sym == code && q+300 > s && q < s+300 {
					near = append(near, q)
				}
			}
			slices.Sort(near)
			t.Fatalf("seq %d (symbol %d, member %d's: on %s, %+v, moves %q; its seqs of it near: %v) reached the group's callers %d times (after the joins at %d)",
				s, code, o, m.on, m.cl.Stats(), m.moves, near, got[s], start)
		}
	}
	if moves < on[kids[victim].addr] { // more when a move's catch-up is cut as slow and moves again
		t.Fatalf("%d members moved for the dead child, which held %d", moves, on[kids[victim].addr])
	}
	t.Logf("%d members moved off %s; %d redelivered frames dropped as had", moves, victim, dups)
	// They close: each place is held for it (-group-linger).
	for _, m := range ms {
		m.cl.Close()
	}
	waitFor(t, "the 6 places held", 5*time.Second, func() bool {
		return testutil.ToFloat64(rt.Metrics().GroupHeld) == 6
	})
}
