package session

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/alert"
	"tickrelay/child/frames"
	"tickrelay/control"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// groupRig is a rig whose loop submits to a sequencer of the test's; seq
// applies what was submitted, as the relay stream would, at the loop's
// place.
type groupRig struct {
	*rig
	seq       *control.Sequencer
	submitted []control.Op
}

func newGroupRig(t *testing.T) *groupRig {
	g := &groupRig{seq: control.NewSequencer(1, 100)}
	g.rig = newRig(t, Config{Origin: "c/0", Submit: func(op control.Op) error {
		g.submitted = append(g.submitted, op)
		return nil
	}, Alerts: func(read func(*alert.Set)) { read(g.seq.Alerts()) }})
	return g
}

// sequence sequences what the loop submitted and hands the records to it.
func (g *groupRig) sequence() {
	for _, op := range g.submitted {
		r, sequenced, err := g.seq.Submit(0, op, g.added, 0)
		if err != nil {
			g.t.Fatal(err)
		}
		if !sequenced {
			continue // a place held
		}
		b := frames.GetBatch()
		b.Control = &frames.ControlMark{Record: r}
		g.l.Add(b, g.now)
	}
	g.submitted = nil
}

func TestGroupBySymbol(t *testing.T) {
	g := newGroupRig(t)
	var ms []*testConn
	for range 3 {
		c := g.open()
		g.input(c, "SUB * GROUP g")
		ms = append(ms, c)
	}
	if got := ms[0].lines(); len(got) != 0 {
		t.Fatalf("before its join took effect: %q", got)
	}
	g.sequence()
	for i, c := range ms {
		if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "OK GROUP g ~c/0.") {
			t.Fatalf("member %d: %q", i, got)
		}
	}
	g.apply(400)
	g.drain()
	owner := map[uint32]int{} // symbol -> member
	seen := map[uint64]bool{}
	for i, c := range ms {
		seqs, other := frameSeqs(t, c.lines())
		if len(other) > 0 {
			t.Fatalf("member %d: %q", i, other)
		}
		for _, s := range seqs {
			if seen[s] {
				t.Fatalf("seq %d to two members", s)
			}
			seen[s] = true
			code := feedtest.Msg(s).Security
			if o, ok := owner[code]; ok && o != i {
				t.Fatalf("symbol %d to members %d and %d", code, o, i)
			}
			owner[code] = i
		}
	}
	if len(seen) != 400 {
		t.Fatalf("%d of 400 seqs delivered", len(seen))
	}
	// A member leaves: its symbols go to the others from its leave's place;
	// the items before the leave took effect are lost, and counted.
	ms[0].Close()
	g.apply(100)
	g.drain()
	lost := testutil.ToFloat64(g.l.m.GroupLost.WithLabelValues("g"))
	g.sequence()
	g.apply(100)
	g.drain()
	n := 0
	for _, c := range ms[1:] {
		seqs, _ := frameSeqs(t, c.lines())
		n += len(seqs)
	}
	if want := 200 - int(lost); n != want || lost == 0 {
		t.Fatalf("after a member left: %d delivered, %v lost, want %d + lost = 200", n, lost, want)
	}
	if testutil.ToFloat64(g.l.m.GroupLost.WithLabelValues("g")) != lost {
		t.Fatal("items lost after the leave took effect")
	}
}

func TestGroupRoundRobinAndPlain(t *testing.T) {
	g := newGroupRig(t)
	a, b, plain := g.open(), g.open(), g.open()
	g.input(a, "SUB 00001 00002 GROUP w rr")
	g.input(b, "SUB 00001 00002 GROUP w rr")
	g.input(plain, "SUB 00001 00002")
	g.sequence()
	a.lines()
	b.lines()
	plain.lines()
	g.apply(4000)
	g.drain()
	sa, _ := frameSeqs(t, a.lines())
	sb, _ := frameSeqs(t, b.lines())
	sp, _ := frameSeqs(t, plain.lines())
	if len(sa)+len(sb) != len(sp) || len(sa) == 0 || len(sb) == 0 {
		t.Fatalf("rr: %d + %d, plain %d", len(sa), len(sb), len(sp))
	}
	if d := len(sa) - len(sb); d > len(sp)/4 || -d > len(sp)/4 { // 5 standard deviations
		t.Fatalf("rr uneven: %d vs %d", len(sa), len(sb))
	}
}

func TestGroupBadInput(t *testing.T) {
	g := newGroupRig(t)
	c := g.open()
	for line, want := range map[string]string{
		"SUB * GROUP":        "ERR BADARG GROUP needs a name",
		"SUB * GROUP g x":    `ERR BADARG GROUP "g": unknown option "x" (rr, ack)`,
		"ACK 5":              "ERR BADARG ACK without a GROUP ... ack membership",
		"ACK x":              `ERR BADARG ACK seq "x" is not an integer in 1..4294967295`,
		"SUB * GROUP b@d":    `ERR BADARG bad group name "b@d": 1..64 of A-Z a-z 0-9 . _ : / -`,
		"UNSUB * GROUP nope": `ERR BADARG not in group "nope"`,
		"SUB GROUP g":        "ERR BADARG SUB needs at least one symbol",
	} {
		if g.input(c, line) {
			t.Fatalf("%q closed the connection", line)
		}
		if got := c.lines(); len(got) != 1 || got[0] != want {
			t.Errorf("%q: %q, want %q", line, got, want)
		}
	}
	for i := range MaxGroupsPerClient {
		g.input(c, "SUB * GROUP g"+string(rune('a'+i)))
	}
	g.input(c, "SUB * GROUP one-more")
	if got := c.lines(); len(got) != 1 || got[0] != "ERR LIMIT at most 16 groups per client" {
		t.Fatalf("past the group cap: %q", got)
	}
	_ = wire.CmdSub
}

// TestGroupAck: an ack member that leaves has its unacknowledged items
// (delivered after its last ACK, or owned and not yet delivered) sent
// again to their new owners after a REDELIVER line: with the ACKed ones,
// every seq reaches the group; ACK of a seq never delivered, or going
// backwards, is refused.
func TestGroupAck(t *testing.T) {
	g := newGroupRig(t)
	a, b := g.open(), g.open()
	g.input(a, "SUB * GROUP q ack")
	g.input(b, "SUB * GROUP q ack")
	g.sequence()
	a.lines()
	b.lines()
	g.apply(300)
	g.drain()
	sa, _ := frameSeqs(t, a.lines())
	sb, _ := frameSeqs(t, b.lines())
	if len(sa) < 20 || len(sb) == 0 {
		t.Fatalf("shares %d, %d", len(sa), len(sb))
	}
	acked := sa[len(sa)/2]
	g.input(a, "ACK "+itoa(acked))
	g.input(a, "ACK "+itoa(acked-1))
	g.input(a, "ACK 100000")
	if got := a.lines(); len(got) != 2 || !strings.HasPrefix(got[0], "ERR BADARG ACK going backwards") || !strings.HasPrefix(got[1], "ERR BADARG ACK of seq 100000, which was never delivered") {
		t.Fatalf("bad ACKs: %q", got)
	}
	// a goes; items it would have owned meanwhile are not lost.
	a.Close()
	g.apply(100)
	g.drain()
	if lost := testutil.ToFloat64(g.l.m.GroupLost.WithLabelValues("q")); lost != 0 {
		t.Fatalf("%v items lost in an ack group", lost)
	}
	g.sequence()
	g.apply(100)
	g.drain()
	lines := b.lines()
	at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "REDELIVER q ") })
	if at < 0 {
		t.Fatalf("b after a left: no REDELIVER among %d lines", len(lines))
	}
	n, _ := strconv.Atoi(strings.Fields(lines[at])[2])
	before, _ := frameSeqs(t, lines[:at])
	re, _ := frameSeqs(t, lines[at+1:at+1+n])
	live, _ := frameSeqs(t, lines[at+1+n:])
	sb = append(sb, before...)
	got := map[uint64]bool{}
	for _, s := range sa {
		if s <= acked {
			got[s] = true
		}
	}
	for _, list := range [][]uint64{sb, re, live} {
		for _, s := range list {
			got[s] = true
		}
	}
	for s := uint64(1); s <= 500; s++ {
		if !got[s] {
			t.Fatalf("seq %d reached nobody (a acked %d, %d redelivered)", s, acked, n)
		}
	}
	if r := testutil.ToFloat64(g.l.m.GroupRedelivered.WithLabelValues("q")); int(r) != n || n <= len(sa)-len(sa)/2-1 {
		t.Fatalf("%d redelivered (metric %v); a had %d unacknowledged of its own", n, r, len(sa)-len(sa)/2-1)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestGroupMemberKeepsPlace: a member with an identity whose connection
// closes keeps its symbols while its place is held; back on a new
// connection it gets what it had not acknowledged, then the live stream,
// and nobody else took its symbols.
func TestGroupMemberKeepsPlace(t *testing.T) {
	g := newGroupRig(t)
	g.seq.Linger = 1 // the rig's clock does not move: held until the test ends
	a, b := g.open(), g.open()
	g.input(a, "HELLO bob")
	g.input(a, "SUB * GROUP q ack")
	g.input(b, "SUB * GROUP q ack")
	g.sequence()
	if got := a.lines(); len(got) != 2 || !strings.HasPrefix(got[1], "OK GROUP q bob ") {
		t.Fatalf("a: %q", got)
	}
	b.lines()
	g.apply(300)
	g.drain()
	sa, _ := frameSeqs(t, a.lines())
	sb, _ := frameSeqs(t, b.lines())
	if len(sa) < 20 || len(sb) < 20 {
		t.Fatalf("shares %d, %d", len(sa), len(sb))
	}
	acked := sa[len(sa)/2]
	g.input(a, "ACK "+itoa(acked))
	a.Close()
	g.sequence()
	if g.seq.Held() != 1 {
		t.Fatalf("%d places held", g.seq.Held())
	}
	g.apply(100)
	g.drain()
	held, _ := frameSeqs(t, b.lines()) // b keeps its own share only
	c := g.open()
	g.input(c, "HELLO bob")
	g.input(c, "SUB * GROUP q ack")
	g.sequence()
	g.apply(100)
	g.drain()
	lines := c.lines()
	if len(lines) < 3 || !strings.HasPrefix(lines[1], "OK GROUP q bob ") || !strings.HasPrefix(lines[2], "REDELIVER q ") {
		t.Fatalf("c: %q", lines[:min(len(lines), 3)])
	}
	n, _ := strconv.Atoi(strings.Fields(lines[2])[2])
	re, _ := frameSeqs(t, lines[3:3+n])
	live, _ := frameSeqs(t, lines[3+n:])
	after, _ := frameSeqs(t, b.lines())
	mine := map[uint64]bool{}
	for _, s := range sa {
		mine[s] = true
	}
	unacked := 0
	for _, s := range sa {
		if s > acked {
			unacked++
		}
	}
	// Its unacknowledged items, and all it owned while away (its share of
	// 301..400, which b did not take), came again.
	if n <= unacked || n != unacked+(100-len(held)) || re[0] <= acked {
		t.Fatalf("%d redelivered: %d unacknowledged, b took %d of 100 while away", n, unacked, len(held))
	}
	got := map[uint64]int{}
	for _, list := range [][]uint64{sb, held, after, re, live} {
		for _, s := range list {
			got[s]++
		}
	}
	for _, s := range sa {
		if s <= acked {
			got[s]++
		}
	}
	for s := uint64(1); s <= 500; s++ {
		if got[s] != 1 {
			t.Fatalf("seq %d delivered %d times", s, got[s])
		}
	}
	if g.seq.Held() != 0 {
		t.Fatal("still held")
	}
}

// TestGroupMemberMoved: a second connection of a member takes it over,
// the first is told ERR MOVED and gets no more of it and leaves nothing
// when it closes; a join of it from another child moves it there.
func TestGroupMemberMoved(t *testing.T) {
	g := newGroupRig(t)
	a, c := g.open(), g.open()
	g.input(a, "HELLO bob")
	g.input(a, "SUB 00005 00700 GROUP q")
	g.sequence()
	a.lines()
	g.input(c, "HELLO bob")
	g.input(c, "SUB 00005 00700 GROUP q")
	g.sequence()
	if got := a.lines(); len(got) != 1 || got[0] != "ERR MOVED group q: the member joined on another connection" {
		t.Fatalf("a: %q", got)
	}
	if got := c.lines(); len(got) != 2 || !strings.HasPrefix(got[1], "OK GROUP q bob ") {
		t.Fatalf("c: %q", got)
	}
	g.apply(300)
	g.drain()
	if got := a.lines(); len(got) != 0 {
		t.Fatalf("a got %d lines after it moved", len(got))
	}
	if sc, _ := frameSeqs(t, c.lines()); len(sc) == 0 {
		t.Fatal("c got nothing")
	}
	a.Close()
	if len(g.submitted) != 0 {
		t.Fatalf("a's close submitted %+v", g.submitted)
	}
	r, ok, err := g.seq.Submit(1, control.Op{Kind: control.KindJoin, Group: "q", Member: "bob", Origin: "other/0", Static: true, Syms: []uint32{5}}, g.added, 0)
	if err != nil || !ok {
		t.Fatal(err)
	}
	b := frames.GetBatch()
	b.Control = &frames.ControlMark{Record: r}
	g.l.Add(b, g.now)
	g.l.Flush()
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "ERR MOVED group q") {
		t.Fatalf("c after a join elsewhere: %q", got)
	}
	g.apply(100)
	g.drain()
	if got := c.lines(); len(got) != 0 {
		t.Fatalf("c got %d lines after it moved away", len(got))
	}
}

// TestGroupLateRecord: a join that reaches the loop after items past its
// place (root B ran ahead of A) gives the new member the items it owns
// from its place on (REDELIVER): the other children gave them by the
// record, so none of them is lost; the old owner had them too.
func TestGroupLateRecord(t *testing.T) {
	g := newGroupRig(t)
	a, b := g.open(), g.open()
	g.input(a, "SUB * GROUP q")
	g.sequence()
	a.lines()
	g.apply(200)
	g.drain()
	symOf := map[uint64]string{}
	for _, line := range a.lines() {
		if f := strings.Fields(line); wire.KindOf([]byte(line)) == wire.LineFrame {
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			symOf[seq] = f[2]
		}
	}
	if len(symOf) != 200 {
		t.Fatalf("a alone got %d of 200", len(symOf))
	}
	g.input(b, "SUB * GROUP q")
	r, _, err := g.seq.Submit(0, g.submitted[0], 100, 0) // its place: after 100, though the loop is at 200
	if err != nil {
		t.Fatal(err)
	}
	g.submitted = nil
	mk := frames.GetBatch()
	mk.Control, mk.Last = &frames.ControlMark{Record: r}, 200
	g.l.Add(mk, g.now)
	g.apply(200)
	g.drain()
	lines := b.lines()
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "OK GROUP q ") || !strings.HasPrefix(lines[1], "REDELIVER q ") {
		t.Fatalf("b: %q", lines[:min(2, len(lines))])
	}
	n, _ := strconv.Atoi(strings.Fields(lines[1])[2])
	mine := map[string]bool{} // b's symbols, from its live share
	live, _ := frameSeqs(t, lines[2+n:])
	for _, line := range lines[2+n:] {
		mine[strings.Fields(line)[2]] = true
	}
	re, _ := frameSeqs(t, lines[2:2+n])
	want := 0
	for s := uint64(101); s <= 200; s++ {
		if mine[symOf[s]] {
			want++
		}
	}
	if len(live) == 0 || n != want || len(re) != n || re[0] <= 100 || re[n-1] > 200 {
		t.Fatalf("b got %d again (want %d of 101..200), %d live", n, want, len(live))
	}
	for _, s := range re {
		if !mine[symOf[s]] {
			t.Fatalf("seq %d (symbol %s) is not b's", s, symOf[s])
		}
	}
	sa, _ := frameSeqs(t, a.lines())
	got := map[uint64]int{}
	for _, s := range append(sa, live...) {
		got[s]++
	}
	for s := uint64(201); s <= 400; s++ {
		if got[s] != 1 {
			t.Fatalf("seq %d delivered %d times after the late record", s, got[s])
		}
	}
}
