package cluster

import (
	"math/rand/v2"
	"slices"
	"testing"

	"tickrelay/directory"
	"tickrelay/wire"
)

func kid(name string, clients uint32, state wire.ChildState) wire.ChildInfo {
	return wire.ChildInfo{Name: name, Addr: name + ":1", State: state, Load: wire.ChildLoad{Clients: clients}}
}

func names(cs []wire.ChildInfo) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{Sticky, LeastLoaded, RoundRobin, Random} {
		if got, err := ParsePolicy(string(p)); err != nil || got != p {
			t.Fatal(p, got, err)
		}
	}
	if _, err := ParsePolicy("fastest"); err == nil {
		t.Fatal("fastest parsed")
	}
}

func TestRank(t *testing.T) {
	set := []wire.ChildInfo{kid("a", 30, wire.ChildUp), kid("b", 10, wire.ChildUp), kid("c", 20, wire.ChildDraining), kid("d", 5, wire.ChildUp)}
	up := []wire.ChildInfo{set[0], set[1], set[3]}
	if got, want := names(rank(Sticky, "x", set, "", nil)), names(directory.Rank("x", up)); !slices.Equal(got, want) {
		t.Fatalf("sticky %v, want %v (draining left out)", got, want)
	}
	if got := names(rank(LeastLoaded, "x", set, "", nil)); !slices.Equal(got, []string{"d", "b", "a"}) {
		t.Fatalf("least-loaded %v", got)
	}
	if got := names(rank(RoundRobin, "x", set, "b:1", nil)); !slices.Equal(got, []string{"d", "a", "b"}) {
		t.Fatalf("round-robin from b: %v", got)
	}
	skipD := func(c wire.ChildInfo) bool { return c.Name == "d" }
	if got := names(rank(Random, "x", set, "", skipD)); len(got) != 2 || slices.Contains(got, "d") || slices.Contains(got, "c") {
		t.Fatalf("random without d: %v", got)
	}
	// Round-robin clients of one process spread evenly.
	n := map[string]int{}
	for range 300 {
		n[rank(RoundRobin, "", set, "", nil)[0].Name]++
	}
	if n["a"] != 100 || n["b"] != 100 || n["d"] != 100 {
		t.Fatalf("round-robin spread %v", n)
	}
}

func TestBalance(t *testing.T) {
	set := []wire.ChildInfo{kid("a", 102, wire.ChildUp), kid("b", 99, wire.ChildUp), kid("c", 99, wire.ChildUp)}
	if _, ok := balance(set, "a:1", 0, 0); ok {
		t.Fatal("moved within the tolerance")
	}
	set[0].Load.Clients = 200
	// mean 132: a is 68 over; a draw under 68/200 moves, to b or c by deficit.
	if to, ok := balance(set, "a:1", 0.3, 0.2); !ok || to.Name != "b" {
		t.Fatal(to, ok)
	}
	if to, ok := balance(set, "a:1", 0.3, 0.7); !ok || to.Name != "c" {
		t.Fatal(to, ok)
	}
	if _, ok := balance(set, "a:1", 0.4, 0.2); ok {
		t.Fatal("moved on a draw over the excess")
	}
	if _, ok := balance(set, "b:1", 0, 0); ok {
		t.Fatal("an underloaded child's client moved")
	}
	// Property: clients that all arrived on one child settle within ±10%
	// in a few rounds, each judging the loads of the round before.
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		on := make([]int, 300) // client -> child index
		for i := range on {
			if trial%2 == 0 {
				on[i] = 0
			} else {
				on[i] = r.IntN(3)
			}
		}
		for range 5 {
			loads := []wire.ChildInfo{kid("a", 0, wire.ChildUp), kid("b", 0, wire.ChildUp), kid("c", 0, wire.ChildUp)}
			for _, k := range on {
				loads[k].Load.Clients++
			}
			for i, k := range on {
				if to, ok := balance(loads, loads[k].Addr, r.Float64(), r.Float64()); ok {
					on[i] = slices.IndexFunc(loads, func(c wire.ChildInfo) bool { return c.Name == to.Name })
				}
			}
		}
		n := [3]int{}
		for _, k := range on {
			n[k]++
		}
		for _, v := range n {
			if v < 90 || v > 110 {
				t.Fatalf("trial %d: spread %v after 5 rounds", trial, n)
			}
		}
	}
}
