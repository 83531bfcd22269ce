package alert

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// The scale of issue 17: a million standing alerts over 17,000 symbols.
const (
	benchAlerts = 1_000_000
	benchSyms   = 17_000
)

// benchDefs makes n repeat alerts (so the population stands still while
// they fire and re-arm) within 5% of each symbol's price of 100.000, on the
// side a move would reach (>= above, <= below), with a hysteresis of 0.5%.
func benchDefs(n int) []Def {
	rng := rand.New(rand.NewPCG(17, 1))
	defs := make([]Def, n)
	ids := make([]string, n/1000+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%d", i)
	}
	for i := range defs {
		op, away := Op(rng.IntN(2)), int32(1+rng.IntN(5000))
		if op == AtOrBelow {
			away = -away
		}
		defs[i] = Def{Owner: ids[i/1000], ID: fmt.Sprintf("a%d", i%1000), Sym: uint32(rng.IntN(benchSyms)),
			Field: Field(rng.IntN(int(nFields))), Op: op, Value: 100_000 + away, Repeat: true, Hyst: 500}
	}
	return defs
}

type benchUpdate struct {
	sym   uint32
	field Field
	price int32
}

// benchPath is a random walk per (symbol, field), up to 0.05% a step,
// within ±6%.
func benchPath(n int) []benchUpdate {
	rng := rand.New(rand.NewPCG(17, 2))
	price := make([]int32, benchSyms*int(nFields))
	for i := range price {
		price[i] = 100_000
	}
	ups := make([]benchUpdate, n)
	for i := range ups {
		k := rng.IntN(len(price))
		p := min(max(price[k]+int32(rng.IntN(101))-50, 94_000), 106_000)
		price[k] = p
		ups[i] = benchUpdate{uint32(k / int(nFields)), Field(k % int(nFields)), p}
	}
	return ups
}

// BenchmarkMatch is one update matched against 1M standing alerts and its
// fires and re-arms applied, as the root's engine does; naive scans the
// symbol's alerts instead. p99-ns is the 99th percentile of single updates.
func BenchmarkMatch(b *testing.B) {
	defs := benchDefs(benchAlerts)
	ups := benchPath(1 << 20)
	b.Run("ladders", func(b *testing.B) {
		s := NewSet(true, 16)
		for _, d := range defs {
			if err := s.Add(d, true); err != nil {
				b.Fatal(err)
			}
		}
		hits := make([]Hit, 0, 1024)
		var fired int
		lat := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			u := ups[i&(len(ups)-1)]
			t0 := time.Now()
			hits = s.Match(u.sym, u.field, u.price, uint64(i+1), hits[:0])
			for _, h := range hits {
				if h.Rearm {
					s.RearmSlot(h.Slot)
				} else {
					s.FireSlot(h.Slot, Fired{Value: u.price})
					fired++
				}
			}
			if i&63 == 0 && len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
		b.ReportMetric(float64(fired)/float64(b.N), "fires/op")
		b.ReportMetric(p99(lat), "p99-ns")
	})
	b.Run("naive", func(b *testing.B) {
		bySym := make([][]naiveAlert, benchSyms)
		for _, d := range defs {
			bySym[d.Sym] = append(bySym[d.Sym], naiveAlert{d, true})
		}
		var fired int
		lat := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			u := ups[i&(len(ups)-1)]
			t0 := time.Now()
			as := bySym[u.sym]
			for j := range as {
				a := &as[j]
				if a.d.Field != u.field {
					continue
				}
				up := a.d.Op == AtOrAbove
				switch {
				case a.armed && (up && u.price >= a.d.Value || !up && u.price <= a.d.Value):
					a.armed = false
					fired++
				case !a.armed && (up && u.price <= a.d.Value-a.d.Hyst || !up && u.price >= a.d.Value+a.d.Hyst):
					a.armed = true
				}
			}
			if i&63 == 0 && len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
		b.ReportMetric(float64(fired)/float64(b.N), "fires/op")
		b.ReportMetric(p99(lat), "p99-ns")
	})
}

func p99(lat []time.Duration) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[len(lat)*99/100].Nanoseconds())
}

// BenchmarkLoad adds 1M alerts to an empty engine (a root restarting, a
// child loading a snapshot); B/alert is the heap they hold.
func BenchmarkLoad(b *testing.B) {
	defs := benchDefs(benchAlerts)
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		s := NewSet(true, 16)
		for _, d := range defs {
			if err := s.Add(d, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s/1M")
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/benchAlerts, "B/alert")
		runtime.KeepAlive(s)
	}
}
