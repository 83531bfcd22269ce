package control

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"tickrelay/alert"
)

func TestOpCodec(t *testing.T) {
	for _, op := range []Op{
		{Kind: KindJoin, Group: "g", Member: "child-a/17", Mode: RoundRobin, Syms: []uint32{5, 1, 700}},
		{Kind: KindJoin, Group: "risk.desk-1", Member: "m:2", All: true},
		{Kind: KindLeave, Group: "g", Member: "child-a/17"},
		{Kind: KindJoin, Group: "g", Member: "m", Ack: true, Syms: []uint32{3}},
		{Kind: KindLeave, Group: "g", Member: "m", Acked: 1<<32 | 77},
		{Kind: KindJoin, Group: "g", Member: "bob", Origin: "child-b/1", Conn: 1 << 40, Static: true, Ack: true, All: true, Acked: 1<<32 | 5},
		{Kind: KindLeave, Group: "g", Member: "bob", Origin: "child-b/1", Linger: true, Acked: 9},
		{Kind: KindJoin, Group: "g", Member: "~child-b/1.4", Origin: "child-b/1"},
		{Kind: KindAlert, Alert: alert.Def{Owner: "desk-b", ID: "a1", Sym: 700, Field: alert.Bid, Op: alert.AtOrBelow, Value: 412_500, Repeat: true, Hyst: 250}, Armed: true},
		{Kind: KindUnalert, Alert: alert.Def{Owner: "desk-b", ID: "a1"}},
		{Kind: KindRearm, Alert: alert.Def{Owner: "desk-b", ID: "a1"}},
		{Kind: KindFired, Alert: alert.Def{Owner: "o", ID: "x"}, Fired: alert.Fired{ID: "x", Sym: 5, Field: alert.Ask, Value: 9, Pos: 1<<32 | 4, T: 1e18, N: 3, Gone: true}},
	} {
		r := Record{Era: 9, Serial: 3, After: 1 << 33, Op: op}
		b, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseRecord(b)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("%+v -> %+v %v", r, got, err)
		}
	}
	for _, op := range []Op{
		{Kind: 9, Group: "g", Member: "m"},
		{Kind: KindJoin, Group: "", Member: "m"},
		{Kind: KindJoin, Group: "g g", Member: "m"},
		{Kind: KindJoin, Group: "g", Member: string(make([]byte, 65))},
		{Kind: KindLeave, Group: "g", Member: "m", All: true},
		{Kind: KindJoin, Group: "g", Member: "m", Mode: 7},
		{Kind: KindJoin, Group: "g", Member: "~~m"},
		{Kind: KindJoin, Group: "g", Member: "m", Origin: "a b"},
		{Kind: KindJoin, Group: "g", Member: "m", Linger: true},
		{Kind: KindLeave, Group: "g", Member: "m", Static: true},
		{Kind: KindAlert, Alert: alert.Def{Owner: "o", ID: "a", Sym: 1, Value: 0}},
		{Kind: KindUnalert, Alert: alert.Def{Owner: "o"}},
		{Kind: KindFired, Alert: alert.Def{Owner: "o", ID: "x"}, Fired: alert.Fired{ID: "x"}},
	} {
		if _, err := AppendOp(nil, op); !errors.Is(err, ErrBad) {
			t.Errorf("%+v encoded: %v", op, err)
		}
	}
	for _, p := range [][]byte{nil, {1, 0, 0, 1, 'g'}, {1, 0, 4, 1, 'g', 1, 'm', 0, 0, 0, 0}, {2, 0, 0, 1, 'g', 1, 'm', 0, 0, 0, 0}, {1, 0, 0, 1, 'g', 1, 'm', 1, 0, 0, 0},
		{1, 0, 16, 1, 'g', 1, 'm', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 1, 'g', 1, 'm', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := ParseOp(p); !errors.Is(err, ErrBad) {
			t.Errorf("%v parsed: %v", p, err)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	b, _ := AppendRecord(nil, Record{Era: 1, Serial: 2, After: 3, Op: Op{Kind: KindJoin, Group: "g", Member: "m", Syms: []uint32{1, 2}}})
	f.Add(b)
	b, _ = AppendRecord(nil, Record{Era: 1, Serial: 2, After: 3, Op: Op{Kind: KindLeave, Group: "g", Member: "bob", Origin: "c/0", Linger: true, Acked: 7}})
	f.Add(b)
	f.Add([]byte{})
	b, _ = AppendRecord(nil, Record{Era: 1, Serial: 2, After: 3, Op: Op{Kind: KindAlert, Alert: alert.Def{Owner: "o", ID: "a", Sym: 5, Value: 1000}, Armed: true}})
	f.Add(b)
	b, _ = AppendRecord(nil, Record{Era: 1, Serial: 2, After: 3, Op: Op{Kind: KindFired, Alert: alert.Def{Owner: "o", ID: "a"}, Fired: alert.Fired{ID: "a", N: 1}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRecord(p)
		if err != nil {
			if !errors.Is(err, ErrBad) {
				t.Fatalf("error not ErrBad: %v", err)
			}
			return
		}
		b, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatalf("a parsed record does not encode: %v", err)
		}
		if r2, err := ParseRecord(b); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip: %+v %+v %v", r, r2, err)
		}
	})
}

func TestSequencer(t *testing.T) {
	s := NewSequencer(7, 3)
	join := func(line int, m string) (Record, error) {
		r, _, err := s.Submit(line, Op{Kind: KindJoin, Group: "g", Member: m, Syms: []uint32{3, 1, 3}}, 100, 0)
		return r, err
	}
	r, err := join(0, "a")
	if err != nil || r.Serial != 1 || r.After != 100 || r.Era != 7 || !slices.Equal(r.Op.Syms, []uint32{1, 3}) {
		t.Fatal(r, err)
	}
	if _, err := join(1, "a"); err == nil {
		t.Fatal("another line took member a")
	}
	if _, _, err := s.Submit(1, Op{Kind: KindLeave, Group: "g", Member: "a"}, 100, 0); err == nil {
		t.Fatal("another line's leave of a")
	}
	join(0, "b")
	join(1, "c")
	join(1, "d")
	if recs, ok := s.Since(7, 0); ok { // 4 records, the last 3 kept
		t.Fatalf("since 0 with 3 kept: %v", recs)
	}
	if recs, ok := s.Since(7, 2); !ok || len(recs) != 2 || recs[0].Serial != 3 {
		t.Fatalf("since 2: %v %v", recs, ok)
	}
	if _, ok := s.Since(6, 4); ok {
		t.Fatal("another era's child needs no snapshot")
	}
	gone := s.LineDown(1, 200, 0)
	if len(gone) != 2 || gone[0].Op.Member != "c" || gone[1].Op.Member != "d" || gone[1].Serial != 6 || gone[0].After != 200 {
		t.Fatalf("line down: %+v", gone)
	}
	serial, live := s.Snapshot()
	if serial != 6 || len(live) != 2 || live[0].Op.Member != "a" || live[1].Op.Member != "b" {
		t.Fatalf("snapshot %d %+v", serial, live)
	}
}

// TestSequencerHeld: a member with an identity keeps its place for
// Linger after its connection ends, comes back with what it had not
// acknowledged, moves from a child to another; an anonymous one does not.
func TestSequencerHeld(t *testing.T) {
	s := NewSequencer(1, 100)
	s.Linger = 10
	join := func(line int, origin, m string, static bool, head uint64, now int64) (Record, bool, error) {
		return s.Submit(line, Op{Kind: KindJoin, Group: "g", Member: m, Origin: origin, Static: static, Ack: true, All: true}, head, now)
	}
	leave := func(line int, origin, m string, linger bool, acked uint64, now int64) (Record, bool, error) {
		return s.Submit(line, Op{Kind: KindLeave, Group: "g", Member: m, Origin: origin, Linger: linger, Acked: acked}, 50, now)
	}
	must := func(r Record, sequenced bool, err error) Record {
		t.Helper()
		if err != nil || !sequenced {
			t.Fatalf("%+v %v %v", r, sequenced, err)
		}
		return r
	}
	must(join(1, "a/0", "bob", true, 10, 0))
	must(join(1, "a/0", "~a/0.1", false, 10, 0))
	// bob's connection closes: its place is held, no record.
	if _, sequenced, err := leave(1, "a/0", "bob", true, 40, 100); sequenced || err != nil || s.Held() != 1 {
		t.Fatalf("held leave: %v %v held %d", sequenced, err, s.Held())
	}
	if _, _, err := leave(1, "a/0", "bob", true, 40, 101); err == nil {
		t.Fatal("a second leave of a held member")
	}
	if recs := s.Expire(60, 109); len(recs) != 0 {
		t.Fatalf("expired before its time: %+v", recs)
	}
	// bob comes back on child b: the join takes its place, with its ACK.
	r := must(join(2, "b/0", "bob", true, 60, 105))
	if r.Op.Acked != 40 || r.Op.Origin != "b/0" || r.After != 60 || s.Held() != 0 {
		t.Fatalf("back in place: %+v held %d", r, s.Held())
	}
	if _, _, err := leave(1, "a/0", "bob", false, 0, 106); err == nil {
		t.Fatal("the old child's leave of a member that moved")
	}
	// A second connection of bob (on a) takes it over, live: its ACKs on
	// b are not known, so it gets again all it owned since its join.
	if r := must(join(1, "a/1", "bob", true, 70, 107)); r.Op.Acked != 60 {
		t.Fatalf("takeover of a live member carries %d", r.Op.Acked)
	}
	if r := must(join(1, "a/1", "bob", true, 75, 107)); r.Op.Acked != 0 {
		t.Fatalf("a join again from the same place carries %d", r.Op.Acked)
	}
	// An anonymous member is another child's: refused; its close leaves.
	if _, _, err := join(2, "b/0", "~a/0.1", false, 70, 107); err == nil {
		t.Fatal("another child took an anonymous member")
	}
	if r := must(leave(1, "a/0", "~a/0.1", true, 45, 108)); r.Op.Acked != 45 {
		t.Fatalf("anonymous leave: %+v", r)
	}
	// Child a's line drops: bob is held, its last ACK its join point; it
	// does not come back, and its leave is sequenced when due.
	if recs := s.LineDown(1, 80, 200); len(recs) != 0 || s.Held() != 1 {
		t.Fatalf("line down: %+v held %d", recs, s.Held())
	}
	if recs := s.Expire(90, 209); len(recs) != 0 {
		t.Fatal("expired early")
	}
	recs := s.Expire(90, 210)
	if len(recs) != 1 || recs[0].Op.Kind != KindLeave || recs[0].Op.Member != "bob" || recs[0].Op.Acked != 75 || recs[0].After != 90 || s.Held() != 0 {
		t.Fatalf("expired: %+v", recs)
	}
	if _, live := s.Snapshot(); len(live) != 0 {
		t.Fatalf("members left: %+v", live)
	}
	// Linger 0: a close is a leave at once.
	s.Linger = 0
	must(join(1, "a/0", "bob", true, 100, 300))
	must(leave(1, "a/0", "bob", true, 0, 301))

	// Its new connection's join reaches the root before its old one's
	// close: the join takes it over (all since its join again), and the
	// old connection's leave is stale, not a leave of the new one.
	s.Linger = 10
	conn := func(kind Kind, n uint64, head uint64) (Record, bool, error) {
		op := Op{Kind: kind, Group: "g", Member: "carol", Origin: "a/0", Conn: n, Linger: kind == KindLeave}
		if kind == KindJoin {
			op.Static, op.Ack, op.All = true, true, true
		}
		return s.Submit(1, op, head, 400)
	}
	must(conn(KindJoin, 1, 110))
	if r := must(conn(KindJoin, 2, 120)); r.Op.Acked != 110 {
		t.Fatalf("a new connection's join first: %+v", r)
	}
	if _, _, err := conn(KindLeave, 1, 121); !errors.Is(err, ErrStale) || s.Held() != 0 {
		t.Fatalf("the old connection's leave: %v, held %d", err, s.Held())
	}
	if _, sequenced, err := conn(KindLeave, 2, 122); sequenced || err != nil || s.Held() != 1 {
		t.Fatalf("the new connection's leave: %v %v", sequenced, err)
	}
}

// TestReplicas: random joins and leaves from three children, sequenced,
// applied by a replica live and by others that join late (a snapshot) or
// reconnect (the records since their serial): at every serial they all
// answer Owner alike; exactly one covering member owns each (symbol, seq);
// and a BySymbol join moves only the symbols the new member now owns.
func TestReplicas(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { replicaRun(t, seed) })
	}
}

func replicaRun(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	s := NewSequencer(1, 8)
	live, late, flaky := NewGroups(), NewGroups(), NewGroups()
	groups := []string{"g1", "g2"}
	members := map[string]int{} // group/member -> line, while joined
	mode := Mode(seed % 2)
	owners := func(g *Groups) []string {
		var out []string
		for _, gr := range groups {
			for sym := uint32(1); sym <= 12; sym++ {
				for seq := uint64(1); seq <= 5; seq++ {
					o, _ := g.Owner(gr, sym, seq)
					out = append(out, o)
				}
			}
		}
		return out
	}
	catchUp := func(g *Groups) {
		recs, ok := s.Since(g.Era(), g.Serial())
		if !ok {
			serial, snap := s.Snapshot()
			g.Load(s.Era(), serial, snap)
			return
		}
		for _, r := range recs {
			if _, err := g.Apply(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	// m0..m3 are identities (Static): a close holds their place for
	// linger steps, and a join from any line takes it over or back.
	const linger = 4
	s.Linger = linger
	held := map[string]int64{} // group/member -> when its held place expires
	static := func(m string) bool { return m < "m4" }
	origin := func(line int) string { return fmt.Sprintf("c%d/0", line) }
	for step := 0; step < 300; step++ {
		now := int64(step)
		gr := groups[rnd.IntN(2)]
		m := fmt.Sprintf("m%d", rnd.IntN(8))
		k := gr + "/" + m
		line, joined := members[k]
		var recs []Record
		switch {
		case rnd.IntN(20) == 0:
			down := rnd.IntN(3)
			recs = s.LineDown(down, uint64(step), now)
			for k, l := range members {
				if _, h := held[k]; l == down && !h {
					if static(k[3:]) {
						held[k] = now + linger
						continue
					}
					delete(members, k)
				}
			}
		case joined && held[k] == 0 && rnd.IntN(2) == 0:
			closing := rnd.IntN(2) == 0
			if _, _, err := s.Submit(line+1, Op{Kind: KindLeave, Group: gr, Member: m, Origin: origin(line)}, uint64(step), now); err == nil {
				t.Fatal("another line's leave")
			}
			r, sequenced, err := s.Submit(line, Op{Kind: KindLeave, Group: gr, Member: m, Origin: origin(line), Linger: closing}, uint64(step), now)
			if err != nil || sequenced != !(closing && static(m)) {
				t.Fatalf("step %d: leave of %s: %v %v", step, k, sequenced, err)
			}
			if !sequenced {
				held[k] = now + linger
				break
			}
			recs = []Record{r}
			delete(members, k)
		default:
			to := line
			if !joined || static(m) {
				to = rnd.IntN(3) // an identity joins from anywhere: back, or moved
			}
			op := Op{Kind: KindJoin, Group: gr, Member: m, Origin: origin(to), Static: static(m), Mode: mode, All: rnd.IntN(4) == 0}
			for range rnd.IntN(6) {
				op.Syms = append(op.Syms, uint32(rnd.IntN(12)+1))
			}
			if joined && !static(m) && to != (line+1)%3 {
				if _, _, err := s.Submit((line+1)%3, op, uint64(step), now); err == nil {
					t.Fatalf("step %d: another line took %s", step, k)
				}
			}
			r, _, err := s.Submit(to, op, uint64(step), now)
			if err != nil {
				t.Fatal(err)
			}
			recs = []Record{r}
			members[k] = to
			delete(held, k)
		}
		for _, r := range s.Expire(uint64(step), now) {
			k := r.Op.Group + "/" + r.Op.Member
			if due, h := held[k]; !h || due > now || r.Op.Kind != KindLeave {
				t.Fatalf("step %d: expired %+v, held %v until %d", step, r.Op, h, due)
			}
			delete(held, k)
			delete(members, k)
			recs = append(recs, r)
		}
		for k, due := range held {
			if due <= now {
				t.Fatalf("step %d: %s held past %d", step, k, due)
			}
		}
		if s.Held() != len(held) {
			t.Fatalf("step %d: %d held, want %d", step, s.Held(), len(held))
		}
		for _, r := range recs {
			before := owners(live)
			if _, err := live.Apply(r); err != nil {
				t.Fatal(err)
			}
			after := owners(live)
			if mode == BySymbol && r.Op.Kind == KindJoin {
				for i := range after { // only toward the joiner (or its own symbols changed)
					if before[i] != after[i] && after[i] != r.Op.Member && before[i] != r.Op.Member {
						t.Fatalf("step %d: join of %s moved a symbol from %s to %s", step, r.Op.Member, before[i], after[i])
					}
				}
			}
		}
		if step == 50 {
			catchUp(late) // starts late: a snapshot
		}
		if step > 50 {
			catchUp(late)
		}
		if rnd.IntN(7) != 0 { // flaky misses some steps, then catches up
			catchUp(flaky)
		}
		if step > 50 && !slices.Equal(owners(late), owners(live)) {
			t.Fatalf("step %d: the late replica differs", step)
		}
	}
	catchUp(flaky)
	if !slices.Equal(owners(flaky), owners(live)) {
		t.Fatal("the flaky replica differs")
	}
	// One owner, a covering member, for each (group, symbol, seq).
	for _, gr := range groups {
		for sym := uint32(1); sym <= 12; sym++ {
			o, ok := live.Owner(gr, sym, 3)
			if ok && !slices.Contains(live.Members(gr), o) {
				t.Fatalf("owner %s is not a member of %s", o, gr)
			}
		}
	}
}

func FuzzParseSnapshot(f *testing.F) {
	b, _ := AppendSnapshot(nil, SnapshotHeader{Era: 3, Serial: 9, Part: 1, Last: true}, []Record{
		{Era: 3, Serial: 2, Op: Op{Kind: KindJoin, Group: "g", Member: "m", All: true}},
		{Era: 3, Op: Op{Kind: KindAlert, Alert: alert.Def{Owner: "o", ID: "a", Sym: 5, Value: 1000, Repeat: true, Hyst: 10}}},
		{Era: 3, Op: Op{Kind: KindFired, Alert: alert.Def{Owner: "o", ID: "a"}, Fired: alert.Fired{ID: "a", Sym: 5, Value: 1000, Pos: 7, T: 9, N: 1, Gone: true}}},
	})
	f.Add(b)
	f.Fuzz(func(t *testing.T, p []byte) {
		h, live, err := ParseSnapshot(p)
		if err != nil {
			if !errors.Is(err, ErrBad) {
				t.Fatalf("error not ErrBad: %v", err)
			}
			return
		}
		b, err := AppendSnapshot(nil, h, live)
		if err != nil {
			t.Fatal(err)
		}
		h2, l2, err := ParseSnapshot(b)
		if err != nil || h2 != h || !reflect.DeepEqual(live, l2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestSequencerAlerts: the root's engine takes ALERT and UNALERT, refuses
// what is wrong, fires after the item that reached the alert, and its
// snapshot parts load a replica that matches it.
func TestSequencerAlerts(t *testing.T) {
	s := NewSequencer(4, 1000)
	s.MaxAlerts = 3
	def := func(id string, op alert.Op, v int32) alert.Def {
		return alert.Def{Owner: "bob", ID: id, Sym: 700, Field: alert.Last, Op: op, Value: v}
	}
	live := alert.NewSet(false, FiresKept)
	submit := func(op Op) error {
		r, _, err := s.Submit(1, op, 10, 0)
		if err == nil {
			err = ApplyAlert(live, r)
		}
		return err
	}
	if err := submit(Op{Kind: KindAlert, Alert: def("up", alert.AtOrAbove, 101_000)}); err != nil {
		t.Fatal(err)
	}
	rep := def("rep", alert.AtOrBelow, 99_000)
	rep.Repeat, rep.Hyst = true, 500
	if err := submit(Op{Kind: KindAlert, Alert: rep}); err != nil {
		t.Fatal(err)
	}
	for _, op := range []Op{
		{Kind: KindAlert, Alert: def("up", alert.AtOrBelow, 5)},         // id in use
		{Kind: KindUnalert, Alert: alert.Def{Owner: "bob", ID: "nope"}}, // unknown
		{Kind: KindRearm, Alert: alert.Def{Owner: "bob", ID: "rep"}},    // the engine's kind
	} {
		if err := submit(op); err == nil {
			t.Fatalf("%+v accepted", op)
		}
	}
	if err := submit(Op{Kind: KindAlert, Alert: def("x", alert.AtOrAbove, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := submit(Op{Kind: KindAlert, Alert: def("y", alert.AtOrAbove, 1)}); err == nil {
		t.Fatal("a 4th alert over MaxAlerts 3 accepted")
	}
	if err := submit(Op{Kind: KindUnalert, Alert: alert.Def{Owner: "bob", ID: "x"}}); err != nil {
		t.Fatal(err)
	}
	serial := s.Serial()
	for i, p := range []int32{100_000, 101_500, 98_000, 99_200, 99_600, 98_900} {
		s.Match(700, alert.Last, p, uint64(20+i), int64(i))
		s.Match(700, alert.Bid, p, uint64(20+i), int64(i)) // another field: nothing
	}
	recs, _ := s.Since(4, serial)
	var got []string
	for _, r := range recs {
		if err := ApplyAlert(live, r); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s@%d", r.Op.Kind, r.Op.Alert.ID, r.After))
	}
	// up fires at 101.5 (gone); rep fires at 98, re-arms at 99.6 (>= 99 + 0.5), fires at 98.9.
	want := []string{"5 up@21", "5 rep@22", "6 rep@24", "5 rep@25"}
	if !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
	if live.Len() != 1 || live.LastFire("bob") != 3 {
		t.Fatalf("replica: %d standing, last fire %d", live.Len(), live.LastFire("bob"))
	}
	// Snapshot parts, small enough to split, load an equal replica.
	s.MaxAlerts = 0
	for i := range 200 {
		if err := submit(Op{Kind: KindAlert, Alert: alert.Def{Owner: fmt.Sprint("o", i%7), ID: fmt.Sprint("a", i), Sym: uint32(i), Value: 1000}}); err != nil {
			t.Fatal(err)
		}
	}
	loaded := alert.NewSet(false, FiresKept)
	var parts []SnapshotHeader
	err := s.SnapshotParts(1000, func(p []byte) error {
		h, recs, err := ParseSnapshot(p)
		if err != nil {
			return err
		}
		parts = append(parts, h)
		for _, r := range recs {
			if err := LoadAlert(loaded, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 5 || !parts[len(parts)-1].Last || parts[0].Last || parts[3].Part != 3 || parts[0].Serial != s.Serial() {
		t.Fatalf("parts %+v", parts)
	}
	dump := func(x *alert.Set) []string {
		var out []string
		x.Each(func(d alert.Def, armed bool) { out = append(out, fmt.Sprint(d, armed)) })
		x.EachFired(func(o string, f alert.Fired) { out = append(out, fmt.Sprint(o, f)) })
		slices.Sort(out)
		return out
	}
	if a, b := dump(live), dump(loaded); !slices.Equal(a, b) || len(a) != 204 {
		t.Fatalf("loaded replica differs: %d vs %d", len(a), len(b))
	}
}
