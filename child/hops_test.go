package child

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tickrelay/latency"
)

// TestClockOffsetWithinBound: with random one-way delays and root
// processing times, the min-RTT estimate is always within its bound of the
// true offset, and the bound shrinks as better samples arrive.
func TestClockOffsetWithinBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		off := rng.Int64N(2e9) - 1e9 // root clock minus child clock, up to ±1 s
		c := NewClock(16)
		t0 := int64(1_700_000_000_000_000_000)
		for i := 0; i < 40; i++ {
			up, down := 10_000+rng.Int64N(500_000), 10_000+rng.Int64N(500_000)
			proc := rng.Int64N(20_000)
			t1 := t0 + up + off
			t2 := t1 + proc
			t3 := t2 - off + down
			if _, ok := c.Add(t0, t1, t2, t3); !ok {
				t.Fatalf("trial %d: sample rejected", trial)
			}
			est, bound, ok := c.Estimate()
			if !ok || bound < 0 {
				t.Fatalf("no estimate")
			}
			if d := est - off; d > bound || -d > bound {
				t.Fatalf("trial %d sample %d: estimate %d, true %d: error %d > bound %d", trial, i, est, off, d, bound)
			}
			t0 = t3 + int64(time.Millisecond)
		}
	}
}

// TestChildHopMetrics: after items flow to a subscriber, the child's
// registry exposes the per-hop histograms with their counts: exch->root and
// root->child once per item (recorded or rejected), the child hop at least
// once per item (once per event loop that drained it).
func TestChildHopMetrics(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, nil)
	r := subAll(t, ch)
	const n = 500
	root.publish(n)
	if err := r.untilSeq(n); err != nil {
		t.Fatal(err)
	}
	mfs, err := ch.cfg.Registerer.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	errs := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "tickrelay_child_hop_latency_seconds":
			for _, m := range mf.GetMetric() {
				counts[hopLabel(m)] = m.GetHistogram().GetSampleCount()
			}
		case "tickrelay_child_hop_latency_errors_total":
			for _, m := range mf.GetMetric() {
				errs[hopLabel(m)] = m.GetCounter().GetValue()
			}
		}
	}
	t.Logf("counts %v errors %v", counts, errs)
	for _, hop := range []latency.Hop{latency.HopExchRoot, latency.HopRoot, latency.HopRootChild} {
		k := hop.Key()
		if got := counts[k] + uint64(errs[k]); got != n {
			t.Errorf("%s: %d recorded + %v errors, want %d items", k, counts[k], errs[k], n)
		}
	}
	// The fake root's stamps are real times: root->child is recorded, not rejected.
	if counts[latency.HopRootChild.Key()] != n {
		t.Errorf("root->child: %d recorded, want %d", counts[latency.HopRootChild.Key()], n)
	}
	if got := counts[latency.HopChild.Key()]; got < n || errs[latency.HopChild.Key()] != 0 {
		t.Errorf("child hop: %d recorded, %v errors, want >= %d", got, errs[latency.HopChild.Key()], n)
	}
	if h := ch.Hops(); h.Frames() != n {
		t.Errorf("Hops().Frames %d, want %d", h.Frames(), n)
	}
	// The first TimeReply may still be on its way (one per ClockInterval).
	off, bound, ok := ch.ClockOffset()
	for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		off, bound, ok = ch.ClockOffset()
	}
	if !ok || bound < 0 || off > int64(time.Second) || off < -int64(time.Second) {
		t.Errorf("clock offset %d ± %d (%v)", off, bound, ok)
	}
}

func hopLabel(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "hop" {
			return l.GetValue()
		}
	}
	return ""
}
