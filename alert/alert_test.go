package alert

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// naive is the model: every alert in a list, each update scans them all.
type naive struct {
	alerts []naiveAlert
}

type naiveAlert struct {
	d     Def
	armed bool
}

func (n *naive) hits(sym uint32, f Field, p int32) []string {
	var out []string
	for _, a := range n.alerts {
		if a.d.Sym != sym || a.d.Field != f {
			continue
		}
		v, h := int64(a.d.Value), int64(a.d.Hyst)
		up := a.d.Op == AtOrAbove
		switch {
		case a.armed && (up && int64(p) >= v || !up && int64(p) <= v):
			out = append(out, "fire "+a.d.Owner+"/"+a.d.ID)
		case !a.armed && (up && int64(p) <= v-h || !up && int64(p) >= v+h):
			out = append(out, "rearm "+a.d.Owner+"/"+a.d.ID)
		}
	}
	slices.Sort(out)
	return out
}

func (n *naive) find(owner, id string) int {
	return slices.IndexFunc(n.alerts, func(a naiveAlert) bool { return a.d.Owner == owner && a.d.ID == id })
}

// TestMatchAgainstNaive drives Set and the naive scan with the same random
// alerts, removals and price paths: every update must reach the same
// alerts, and the fires and re-arms applied keep them in step.
func TestMatchAgainstNaive(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s, m := NewSet(true, 8), &naive{}
		const syms = 5
		price := map[[2]uint32]int32{}
		for sym := range uint32(syms) {
			for f := range nFields {
				price[[2]uint32{sym, uint32(f)}] = 100_000
			}
		}
		var hits []Hit
		for step := range 3000 {
			switch r := rng.IntN(10); {
			case r < 3: // add
				sym, f := uint32(rng.IntN(syms)), Field(rng.IntN(int(nFields)))
				d := Def{Owner: fmt.Sprintf("o%d", rng.IntN(4)), ID: fmt.Sprintf("a%d", rng.IntN(200)), Sym: sym, Field: f,
					Op: Op(rng.IntN(2)), Value: price[[2]uint32{sym, uint32(f)}] + int32(rng.IntN(4001)) - 2000}
				if rng.IntN(3) == 0 {
					d.Repeat, d.Hyst = true, int32(1+rng.IntN(500))
				}
				err := s.Add(d, true)
				if i := m.find(d.Owner, d.ID); i >= 0 {
					if err == nil {
						t.Fatalf("seed %d step %d: id reused and accepted", seed, step)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				m.alerts = append(m.alerts, naiveAlert{d, true})
			case r < 4 && len(m.alerts) > 0: // remove
				a := m.alerts[rng.IntN(len(m.alerts))].d
				if _, err := s.Remove(a.Owner, a.ID); err != nil {
					t.Fatal(err)
				}
				m.alerts = slices.Delete(m.alerts, m.find(a.Owner, a.ID), m.find(a.Owner, a.ID)+1)
			default: // an update
				sym, f := uint32(rng.IntN(syms)), Field(rng.IntN(int(nFields)))
				k := [2]uint32{sym, uint32(f)}
				p := max(price[k]+int32(rng.IntN(1201))-600, 1)
				price[k] = p
				want := m.hits(sym, f, p)
				hits = s.Match(sym, f, p, uint64(step+1), hits[:0])
				var got []string
				for _, h := range hits {
					d := s.Def(h.Slot)
					verb := "fire "
					if h.Rearm {
						verb = "rearm "
					}
					got = append(got, verb+d.Owner+"/"+d.ID)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: update %d/%s to %d reached\n%v\nwant\n%v", seed, step, sym, f, p, got, want)
				}
				for _, w := range want { // apply to both
					verb, key, _ := strings.Cut(w, " ")
					owner, id, _ := strings.Cut(key, "/")
					i := m.find(owner, id)
					if verb == "rearm" {
						if err := s.Rearm(owner, id); err != nil {
							t.Fatal(err)
						}
						m.alerts[i].armed = true
						continue
					}
					fd, err := s.Fire(owner, Fired{ID: id, Value: p, Pos: uint64(step)})
					if err != nil {
						t.Fatal(err)
					}
					if fd.Gone != !m.alerts[i].d.Repeat {
						t.Fatalf("Gone %v for %+v", fd.Gone, m.alerts[i].d)
					}
					if m.alerts[i].d.Repeat {
						m.alerts[i].armed = false
					} else {
						m.alerts = slices.Delete(m.alerts, i, i+1)
					}
				}
			}
			if s.Len() != len(m.alerts) {
				t.Fatalf("seed %d step %d: %d standing, want %d", seed, step, s.Len(), len(m.alerts))
			}
		}
	}
}

// TestLadderManyOnOneSymbol fills one symbol past many chunk splits and
// takes it apart in another order: the ladder stays sorted and exact.
func TestLadderManyOnOneSymbol(t *testing.T) {
	s := NewSet(true, 4)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 5000
	for i := range n {
		if err := s.Add(Def{Owner: "o", ID: fmt.Sprint(i), Sym: 9, Op: AtOrAbove, Value: int32(1 + rng.IntN(100_000))}, true); err != nil {
			t.Fatal(err)
		}
	}
	ls := s.ladders[9<<2]
	if ls.up.len() != n || len(ls.up.chunks) < n/rungsPerChunk {
		t.Fatalf("%d rungs in %d chunks", ls.up.len(), len(ls.up.chunks))
	}
	var all []uint64
	for _, c := range ls.up.chunks {
		if len(c) == 0 || len(c) > rungsPerChunk {
			t.Fatalf("chunk of %d", len(c))
		}
		all = append(all, c...)
	}
	if !slices.IsSorted(all) {
		t.Fatal("ladder not sorted")
	}
	hits := s.Match(9, Last, 50_000, 1, nil)
	wantN := 0
	s.Each(func(d Def, _ bool) {
		if d.Value <= 50_000 {
			wantN++
		}
	})
	if len(hits) != wantN {
		t.Fatalf("%d hits, want %d", len(hits), wantN)
	}
	for _, i := range rng.Perm(n) {
		if _, err := s.Remove("o", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 0 || len(s.ladders) != 0 {
		t.Fatalf("%d standing, %d ladders left", s.Len(), len(s.ladders))
	}
}

func TestFiredLog(t *testing.T) {
	s := NewSet(false, 3)
	for i := range 5 {
		if err := s.Add(Def{Owner: "bob", ID: fmt.Sprint("a", i), Sym: 1, Value: 1000}, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		f, err := s.Fire("bob", Fired{ID: fmt.Sprint("a", i), Pos: uint64(10 + i)})
		if err != nil || f.N != uint64(i+1) || !f.Gone {
			t.Fatalf("fire %d: %+v %v", i, f, err)
		}
	}
	var got []uint64
	lost := s.FiredAfter("bob", 1, func(f Fired) { got = append(got, f.N) })
	if !lost || !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Fatalf("after 1: %v lost %v", got, lost)
	}
	got = got[:0]
	if lost := s.FiredAfter("bob", 3, func(f Fired) { got = append(got, f.N) }); lost || !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("after 3: %v lost %v", got, lost)
	}
	if _, err := s.Fire("bob", Fired{ID: "a1"}); err == nil {
		t.Fatal("a gone alert fired again")
	}
	// A snapshot's copy numbers on from where the log was.
	c := NewSet(false, 3)
	s.EachFired(func(o string, f Fired) { c.LoadFired(o, f) })
	if c.LastFire("bob") != 5 || !c.FiredAfter("bob", 1, func(Fired) {}) {
		t.Fatal("loaded log lost its numbering")
	}
}

func TestParse(t *testing.T) {
	words := func(s string) [][]byte { return bytes.Fields([]byte(s)) }
	d, sym, err := Parse(words("a1 00700 bid >= 412.5 repeat 0.25"))
	if err != nil || string(sym) != "00700" || d.ID != "a1" || d.Field != Bid || d.Op != AtOrAbove || d.Value != 412_500 || !d.Repeat || d.Hyst != 250 {
		t.Fatalf("%+v %q %v", d, sym, err)
	}
	if got := string(AppendDef(nil, &d, sym)); got != "a1 00700 bid >= 412.500 repeat 0.250" {
		t.Fatal(got)
	}
	for _, bad := range []string{
		"", "a1 5 last >= 1 x", "a1 5 high >= 1", "a1 5 last > 1", "a1 5 last >= 1.2345", "a1 5 last >= 0",
		"a1 5 last >= 2147484", "a1 5 last >= -1", "a1 5 last >= 1. ", "a1 5 last >= .5", "a1 5 last >= 1e3",
		"a1 5 last >= 1 repeat 0", "a1 5 last >= 1 again 1", strings.Repeat("x", 33) + " 5 last >= 1", "a!b 5 last >= 1",
	} {
		if _, _, err := Parse(words(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for _, c := range []struct {
		in   string
		want int32
	}{{"1", 1000}, {"0.001", 1}, {"2147483.647", MaxValue}, {"12.30", 12300}} {
		if v, err := ParseValue([]byte(c.in)); err != nil || v != c.want {
			t.Errorf("%q: %d %v", c.in, v, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("a1 00700 last >= 412.5"))
	f.Add([]byte("x 5 ask <= 0.001 repeat 0.1"))
	f.Add([]byte("id 1 nominal >= 2147483.647"))
	f.Fuzz(func(t *testing.T, line []byte) {
		d, sym, err := Parse(bytes.Fields(line))
		if err != nil {
			return
		}
		d.Owner = "o"
		if err := d.Check(); err != nil {
			t.Fatalf("parsed %q but %v", line, err)
		}
		again, sym2, err := Parse(bytes.Fields(AppendDef(nil, &d, sym)))
		again.Owner = "o"
		if err != nil || again != d || !bytes.Equal(sym, sym2) {
			t.Fatalf("%q: round trip %+v %v, want %+v", line, again, err, d)
		}
	})
}

func TestFiredLine(t *testing.T) {
	f := Fired{ID: "a-1", Pos: 3<<32 | 812, Field: Ask, Value: 412_500, T: 1765000000123456789, N: 7}
	line := AppendFired(nil, &f, []byte("00700"))
	if string(line) != "FIRED a-1 812 00700 ask=412.500 t=1765000000123456789 n=7\n" {
		t.Fatal(string(line))
	}
	g, sym, err := ParseFired(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil || string(sym) != "00700" || g.Pos != 812 || g.ID != f.ID || g.Field != Ask || g.Value != f.Value || g.T != f.T || g.N != 7 {
		t.Fatalf("%+v %q %v", g, sym, err)
	}
}
