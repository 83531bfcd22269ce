package main

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"testing"
	"time"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/internal/daemontest"
	"tickrelay/root"
	"tickrelay/wire"
)

// TestChildDirectory: children announce themselves to an A/B pair of
// roots; CHILDREN on any child lists every live child with its address;
// WATCH CHILDREN pushes the set again when a child leaves and when one
// joins; a root that stops leaves the others' view standing.
func TestChildDirectory(t *testing.T) {
	const period = 100 * time.Millisecond
	ex := startExchange(t, 2000, 20, 0)
	var roots []string
	var stopA func()
	var rts []*root.Root
	for i := range 2 {
		cfg := newRootConfig(ex.Addr())
		cfg.AnnounceEvery = period
		r, stop := startRoot(t, cfg)
		rts = append(rts, r)
		roots = append(roots, r.Addr().String())
		if i == 0 {
			stopA = stop
		}
	}
	names := map[*child.Child]string{}
	start := func(name string) (*child.Child, func()) {
		cfg := child.DefaultConfig()
		cfg.Roots, cfg.Addr, cfg.Name = roots, "127.0.0.1:0", name
		cfg.ClockInterval, cfg.AnnounceEvery = period, period
		cfg.BackoffMin, cfg.BackoffMax, cfg.Logger = 10*time.Millisecond, 100*time.Millisecond, testLogger()
		c, err := child.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		stop := daemontest.Start(t, "child "+name, c)
		<-c.Ready()
		names[c] = name
		return c, stop
	}
	a, _ := start("a")
	b, stopB := start("b")

	cl, err := client.Dial(t.Context(), a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := func(kids ...*child.Child) string {
		var s []string
		for _, k := range kids {
			s = append(s, names[k]+"@"+k.Addr().String())
		}
		return strings.Join(s, " ")
	}
	got := func(line []byte) string {
		_, kids, err := wire.ParseChildrenLine(line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		var s []string
		for _, k := range kids {
			if k.State != wire.ChildUp {
				t.Fatalf("%q: a child not up", line)
			}
			s = append(s, k.Name+"@"+k.Addr)
		}
		return strings.Join(s, " ")
	}
	next := func() []byte {
		cl.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			ev, err := cl.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Kind == wire.LineChildren {
				return append([]byte(nil), ev.Line...)
			}
		}
	}
	waitFor(t, "both children listed", 5*time.Second, func() bool {
		cl.SendLine("CHILDREN")
		return got(next()) == want(a, b)
	})
	// Its load as a announces it: this client and its two subscriptions.
	if err := cl.Sub("00001", "00002"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's load in the directory", 5*time.Second, func() bool {
		cl.SendLine("CHILDREN")
		_, kids, _ := wire.ParseChildrenLine(next())
		return len(kids) > 0 && kids[0].Name == "a" && kids[0].Load.Clients == 1 && kids[0].Load.Subs == 2
	})
	cl.SendLine("WATCH CHILDREN")
	if g := got(next()); g != want(a, b) {
		t.Fatalf("WATCH answer %q", g)
	}
	stopB()
	if g := got(next()); g != want(a) {
		t.Fatalf("after b stopped: %q, want %q", g, want(a))
	}
	c, _ := start("c")
	if g := got(next()); g != want(a, c) {
		t.Fatalf("after c joined: %q, want %q", g, want(a, c))
	}
	stopA() // root B's view stands: the set ends as both (pushes may show a line going)
	deadline := time.Now().Add(3 * time.Second)
	for g := ""; g != want(a, c); {
		if time.Now().After(deadline) {
			t.Fatalf("after root A stopped: %q (root B: %v children)", g, testutil.ToFloat64(rts[1].Metrics().DirectoryChildren))
		}
		cl.SendLine("CHILDREN")
		g = got(next())
	}
}
