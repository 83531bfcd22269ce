package main

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child"
	"tickrelay/control"
	"tickrelay/internal/daemontest"
	"tickrelay/wire"
)

// applied is what one child's OnControl saw.
type applied struct {
	mu   sync.Mutex
	recs []appliedRec
}

type appliedRec struct {
	r    control.Record
	at   uint64
	late bool
}

func (a *applied) add(r control.Record, at uint64, late bool) {
	a.mu.Lock()
	a.recs = append(a.recs, appliedRec{r, at, late})
	a.mu.Unlock()
}

func (a *applied) snapshot() []appliedRec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recs)
}

func (a *applied) last() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recs) == 0 {
		return 0
	}
	return a.recs[len(a.recs)-1].r.Serial
}

func controlChild(t *testing.T, rootAddr string, name string, a *applied) (*child.Child, func()) {
	t.Helper()
	cfg := child.DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Name, cfg.Loops = []string{rootAddr}, "127.0.0.1:0", name, 1
	cfg.BackoffMin, cfg.BackoffMax, cfg.Logger = 10*time.Millisecond, 100*time.Millisecond, testLogger()
	cfg.OnControl = a.add
	ch, err := child.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := daemontest.Start(t, "child "+name, ch)
	<-ch.Ready()
	return ch, stop
}

// TestControlStream: two children submit group joins and leaves while
// the feed streams; every child applies every record, in serial order,
// between the same two items (right after the item the root placed it
// after, none late); a child that starts later from seq 1 meets each in
// the same place of its catch-up; a child that goes away has its members'
// leaves sequenced for it.
func TestControlStream(t *testing.T) {
	ex := startExchange(t, 2000, 20, 0)
	r, _ := startRoot(t, newRootConfig(ex.Addr()))
	rootAddr := r.Addr().String()
	var seen [3]applied
	a, stopA := controlChild(t, rootAddr, "a", &seen[0])
	b, _ := controlChild(t, rootAddr, "b", &seen[1])
	waitFor(t, "both sequencing lines up", 5*time.Second, func() bool {
		return a.SubmitControl(control.Op{Kind: control.KindJoin, Group: "warm", Member: "a/0", All: true}) == nil &&
			b.SubmitControl(control.Op{Kind: control.KindJoin, Group: "warm", Member: "b/0", All: true}) == nil
	})
	var wg sync.WaitGroup
	for i, ch := range []*child.Child{a, b} {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(3, uint64(i)))
			joined := map[string]bool{}
			for k := range 25 {
				m := fmt.Sprintf("%c/%d", 'a'+i, 1+k%5)
				op := control.Op{Kind: control.KindJoin, Group: "g", Member: m, Syms: []uint32{uint32(1 + k%20)}}
				if joined[m] {
					op = control.Op{Kind: control.KindLeave, Group: "g", Member: m}
				}
				joined[m] = !joined[m]
				if err := ch.SubmitControl(op); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Duration(5+rnd.IntN(30)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	serial := func() uint64 { return uint64(testutil.ToFloat64(r.Metrics().ControlSerial)) }
	waitFor(t, "both children at the root's last serial", 5*time.Second, func() bool {
		return serial() >= 52 && seen[0].last() == serial() && seen[1].last() == serial()
	})
	controlChild(t, rootAddr, "c", &seen[2])
	waitFor(t, "the late child at the last serial", 5*time.Second, func() bool { return seen[2].last() == serial() })

	recsA, recsB, recsC := seen[0].snapshot(), seen[1].snapshot(), seen[2].snapshot()
	if len(recsA) != int(serial()) || len(recsB) != len(recsA) || len(recsC) != len(recsA) {
		t.Fatalf("records applied: a %d, b %d, c %d; the root sequenced %d", len(recsA), len(recsB), len(recsC), serial())
	}
	for i := range recsA {
		x, y := recsA[i], recsB[i]
		if x.r.Serial != uint64(i+1) || y.r.Serial != x.r.Serial || x.r.Op.Member != y.r.Op.Member {
			t.Fatalf("record %d: a %+v, b %+v", i, x.r, y.r)
		}
		if x.late || y.late || x.at != x.r.After || y.at != x.r.After {
			t.Fatalf("serial %d placed after %s: a applied after %s (late %v), b after %s (late %v)", x.r.Serial,
				posText(x.r.After), posText(x.at), x.late, posText(y.at), y.late)
		}
		// c started later from seq 1: it met each record in its catch-up,
		// in the same place.
		if z := recsC[i]; !reflect.DeepEqual(z.r, x.r) || z.at != x.r.After || z.late {
			t.Fatalf("the late child's record %d: %+v after %s, want %+v after %s", i, z.r, posText(z.at), x.r, posText(x.r.After))
		}
	}
	t.Logf("%d records, each applied by both children right after the item it was placed after", len(recsA))

	// a goes: the root sequences the leaves of its members.
	members := map[string]bool{}
	for _, x := range recsA {
		if m := x.r.Op.Member; m[0] == 'a' {
			members[x.r.Op.Group+" "+m] = x.r.Op.Kind == control.KindJoin
		}
	}
	var left []string
	for k, on := range members {
		if on {
			left = append(left, k)
		}
	}
	slices.Sort(left)
	before := serial()
	stopA()
	waitFor(t, "a's members' leaves at b", 5*time.Second, func() bool { return seen[1].last() == before+uint64(len(left)) })
	var got []string
	for _, x := range seen[1].snapshot()[before:] {
		if x.r.Op.Kind != control.KindLeave {
			t.Fatalf("after a went: %+v", x.r)
		}
		got = append(got, x.r.Op.Group+" "+x.r.Op.Member)
	}
	if !slices.Equal(got, left) {
		t.Fatalf("leaves after a went: %v, want %v", got, left)
	}
}

func posText(p uint64) string { return fmt.Sprintf("%d:%d", wire.PosEpoch(p), wire.PosSeq(p)) }
