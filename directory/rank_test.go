package directory

import (
	"fmt"
	"testing"

	"tickrelay/wire"
)

func kids(n int) []wire.ChildInfo {
	var out []wire.ChildInfo
	for i := range n {
		out = append(out, wire.ChildInfo{Name: fmt.Sprintf("c%d", i), Addr: fmt.Sprintf("h:%d", i)})
	}
	return out
}

// TestRankMoves: with 10,000 client ids, a fifth child takes about a fifth
// of the clients, every one of them from another child; removing a child
// moves only its own clients; a draining child is ranked nowhere; each
// child gets its share of first places.
func TestRankMoves(t *testing.T) {
	const clients = 10_000
	first := func(id string, cs []wire.ChildInfo) string { return Rank(id, cs)[0].Name }
	four, five := kids(4), kids(5)
	moved, share := 0, map[string]int{}
	for i := range clients {
		id := fmt.Sprintf("client-%d", i)
		a, b := first(id, four), first(id, five)
		share[a]++
		if a != b {
			moved++
			if b != "c4" {
				t.Fatalf("%s moved from %s to %s, not to the new child", id, a, b)
			}
		}
	}
	if moved < clients*15/100 || moved > clients*25/100 {
		t.Fatalf("a fifth child moved %d of %d clients", moved, clients)
	}
	for name, n := range share {
		if n < clients/4*85/100 || n > clients/4*115/100 {
			t.Fatalf("child %s is first for %d of %d", name, n, clients)
		}
	}
	three := append([]wire.ChildInfo{}, four[:2]...)
	three = append(three, four[3])
	for i := range clients {
		id := fmt.Sprintf("client-%d", i)
		if a, b := first(id, four), first(id, three); a != b && a != "c2" {
			t.Fatalf("removing c2 moved %s from %s", id, a)
		}
	}
	four[1].State = wire.ChildDraining
	for _, c := range Rank("x", four) {
		if c.Name == "c1" {
			t.Fatal("a draining child ranked")
		}
	}
}
