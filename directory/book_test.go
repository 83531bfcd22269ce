package directory

import (
	"strings"
	"testing"
	"time"

	"tickrelay/wire"
)

func names(cs []wire.ChildInfo) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name+"@"+c.Addr+"/"+c.State.String())
	}
	return strings.Join(s, " ")
}

// TestBook: the set is learned for a period before it is published; joins,
// a drain, a dropped line and a silent child each publish a new epoch;
// loads alone publish at most once a period.
func TestBook(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	b := NewBook(time.Second, t0)
	a := wire.ChildInfo{Name: "a", Addr: "127.0.0.1:1"}
	c := wire.ChildInfo{Name: "c", Addr: "127.0.0.1:3"}
	if err := b.Announce(1, a, sec(0.1)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.Publish(sec(0.5)); ok {
		t.Fatal("published in the first period")
	}
	b.Announce(2, c, sec(0.9))
	e, kids, ok := b.Publish(sec(1))
	if !ok || e != 1 || names(kids) != "a@127.0.0.1:1/up c@127.0.0.1:3/up" {
		t.Fatalf("first publish: %d %q %v", e, names(kids), ok)
	}
	if _, _, ok := b.Publish(sec(1.5)); ok {
		t.Fatal("published with nothing new")
	}
	a.Load.Clients = 7
	b.Announce(1, a, sec(1.6))
	if _, _, ok := b.Publish(sec(1.7)); ok {
		t.Fatal("a load change published before a period passed")
	}
	if e, kids, ok := b.Publish(sec(2)); !ok || e != 2 || kids[0].Load.Clients != 7 {
		t.Fatalf("loads after a period: %d %+v %v", e, kids, ok)
	}
	c.State = wire.ChildDraining
	b.Announce(2, c, sec(2.1))
	if e, kids, ok := b.Publish(sec(2.1)); !ok || e != 3 || names(kids) != "a@127.0.0.1:1/up c@127.0.0.1:3/draining" {
		t.Fatalf("drain: %d %q %v", e, names(kids), ok)
	}
	b.LineDown(2)
	if e, kids, ok := b.Publish(sec(2.2)); !ok || e != 4 || names(kids) != "a@127.0.0.1:1/up" {
		t.Fatalf("line down: %d %q %v", e, names(kids), ok)
	}
	// a goes silent: gone after three periods from its last announcement.
	if _, kids, _ := b.Publish(sec(4.5)); len(kids) != 1 {
		t.Fatalf("a dropped early: %q", names(kids))
	}
	if e, kids, ok := b.Publish(sec(4.7)); !ok || e != 6 || len(kids) != 0 {
		t.Fatalf("silent child: %d %q %v", e, names(kids), ok)
	}
}

// TestBookConflicts: a name on two live lines, or an address under two
// names, is refused with an error naming both; the first keeps it. A name
// whose old line went silent may come back on a new one.
func TestBookConflicts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := NewBook(time.Second, t0)
	b.Announce(1, wire.ChildInfo{Name: "a", Addr: "h:1"}, t0)
	if err := b.Announce(2, wire.ChildInfo{Name: "a", Addr: "h:2"}, t0.Add(time.Second)); err == nil || !strings.Contains(err.Error(), `"a" announced on two relay lines`) {
		t.Fatalf("same name: %v", err)
	}
	if err := b.Announce(3, wire.ChildInfo{Name: "b", Addr: "h:1"}, t0.Add(time.Second)); err == nil || !strings.Contains(err.Error(), `which child "a" holds`) {
		t.Fatalf("same address: %v", err)
	}
	if kids := b.Children(); names(kids) != "a@h:1/up" {
		t.Fatalf("after the conflicts: %q", names(kids))
	}
	if err := b.Announce(2, wire.ChildInfo{Name: "a", Addr: "h:2"}, t0.Add(3*time.Second)); err != nil || names(b.Children()) != "a@h:2/up" {
		t.Fatalf("a back on a new line after its old one went silent: %v %q", err, names(b.Children()))
	}
}

// TestUnion: the views of an A/B pair merge by name (the first view's entry
// wins), in name order; a root not heard adds nothing.
func TestUnion(t *testing.T) {
	a := []wire.ChildInfo{{Name: "c", Addr: "h:3"}, {Name: "a", Addr: "h:1", State: wire.ChildDraining}}
	b := []wire.ChildInfo{{Name: "a", Addr: "h:1"}, {Name: "b", Addr: "h:2"}}
	if got := names(Union([][]wire.ChildInfo{a, nil, b})); got != "a@h:1/draining b@h:2/up c@h:3/up" {
		t.Fatalf("%q", got)
	}
	if got := Union([][]wire.ChildInfo{nil, nil}); len(got) != 0 {
		t.Fatalf("%v", got)
	}
}
