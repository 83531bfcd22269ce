package feed

import (
	"bytes"
	"sort"
	"testing"

	"tickrelay/wire"
)

// genFrames returns the first n messages of cfg as frames (send time 0).
func genFrames(t testing.TB, cfg GenConfig, n int) []byte {
	g := NewGenerator(cfg)
	var m wire.Msg
	out := make([]byte, 0, n*64)
	for i := 0; i < n; i++ {
		g.Next(&m)
		var ok bool
		if out, ok = wire.AppendMsgFrame(out, g.Seq(), 0, &m); !ok {
			t.Fatalf("seq %d: type %d does not encode", g.Seq(), m.Type)
		}
	}
	return out
}

func TestGeneratorDeterministic(t *testing.T) {
	a := genFrames(t, GenConfig{Seed: 7, Symbols: 300}, 50_000)
	b := genFrames(t, GenConfig{Seed: 7, Symbols: 300}, 50_000)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different streams")
	}
	c := genFrames(t, GenConfig{Seed: 8, Symbols: 300}, 50_000)
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave the same stream")
	}
}

// TestGeneratorStream decodes every message, checks it round-trips, and
// checks the model's invariants: definitions first, order ids consistent
// per book, closing prices at the end, a sane mix, skewed popularity.
func TestGeneratorStream(t *testing.T) {
	const symbols, total = 500, 200_000
	cfg := GenConfig{Seed: 3, Symbols: symbols, Total: total}
	g := NewGenerator(cfg)
	var (
		m, d     wire.Msg
		frame    []byte
		types    = map[uint16]int{}
		perSym   = make([]int, symbols+1)
		open     = map[uint64]uint32{} // order id -> security
		lastID   uint64
		closings = map[uint32]bool{}
		halted   = map[uint32]bool{}
	)
	for i := uint64(1); i <= total; i++ {
		g.Next(&m)
		if g.Seq() != i {
			t.Fatalf("Seq() = %d after message %d", g.Seq(), i)
		}
		var ok bool
		frame, ok = wire.AppendMsgFrame(frame[:0], i, 42, &m)
		if !ok {
			t.Fatalf("seq %d: type %d does not encode", i, m.Type)
		}
		body, n, err := wire.NextFeedFrame(frame)
		if err != nil || n != len(frame) {
			t.Fatalf("seq %d: NextFeedFrame: %v (n %d of %d)", i, err, n, len(frame))
		}
		h, err := wire.DecodeMsg(body, &d)
		if err != nil {
			t.Fatalf("seq %d: DecodeMsg: %v", i, err)
		}
		if h.Seq != i || d != m {
			t.Fatalf("seq %d: round trip differs:\n got %+v\nwant %+v", i, d, m)
		}
		if m.Security < 1 || m.Security > symbols {
			t.Fatalf("seq %d: security %d out of 1..%d", i, m.Security, symbols)
		}
		if i <= symbols {
			if m.Type != wire.TypeSecurityDefinition || m.Security != uint32(i) {
				t.Fatalf("seq %d: want the definition of %d first, got type %d sec %d", i, i, m.Type, m.Security)
			}
			if m.PrevClose <= 0 || m.LotSize == 0 || string(m.Currency[:]) != "HKD" {
				t.Fatalf("seq %d: bad definition %+v", i, m)
			}
			continue
		}
		if i > total-symbols {
			if m.Type != wire.TypeClosingPrice || closings[m.Security] {
				t.Fatalf("seq %d: want one closing price per symbol, got type %d sec %d", i, m.Type, m.Security)
			}
			closings[m.Security] = true
			continue
		}
		types[m.Type]++
		perSym[m.Security]++
		switch m.Type {
		case wire.TypeAddOrder:
			if m.OrderID <= lastID {
				t.Fatalf("seq %d: order id %d not increasing (last %d)", i, m.OrderID, lastID)
			}
			lastID = m.OrderID
			open[m.OrderID] = m.Security
			if m.Price <= 0 || m.Qty == 0 || m.Side > 1 {
				t.Fatalf("seq %d: bad add %+v", i, m)
			}
		case wire.TypeModifyOrder, wire.TypeDeleteOrder:
			if sec, ok := open[m.OrderID]; !ok || sec != m.Security {
				t.Fatalf("seq %d: type %d names order %d not open in %d's book", i, m.Type, m.OrderID, m.Security)
			}
			if m.Type == wire.TypeDeleteOrder {
				delete(open, m.OrderID)
			}
		case wire.TypeTrade, wire.TypeNominalPrice:
			if m.Price <= 0 {
				t.Fatalf("seq %d: price %d", i, m.Price)
			}
		case wire.TypeAggregateBook:
			if m.NumEntries < 1 || m.NumEntries > wire.MaxBookEntries {
				t.Fatalf("seq %d: %d book entries", i, m.NumEntries)
			}
		case wire.TypeSecurityStatus:
			switch m.Suspension {
			case 2:
				halted[m.Security] = true
			case 3:
				if !halted[m.Security] {
					t.Fatalf("seq %d: resume of %d, which is not halted", i, m.Security)
				}
				delete(halted, m.Security)
			default:
				t.Fatalf("seq %d: suspension %d", i, m.Suspension)
			}
		}
	}
	if len(closings) != symbols {
		t.Fatalf("%d closing prices, want %d", len(closings), symbols)
	}
	n := float64(total - 2*symbols)
	share := func(typ uint16) float64 { return float64(types[typ]) / n }
	for _, c := range []struct {
		typ    uint16
		lo, hi float64
	}{
		{wire.TypeAddOrder, 0.25, 0.45},
		{wire.TypeModifyOrder, 0.08, 0.20},
		{wire.TypeDeleteOrder, 0.15, 0.30},
		{wire.TypeAggregateBook, 0.10, 0.20},
		{wire.TypeTrade, 0.06, 0.14},
		{wire.TypeNominalPrice, 0.01, 0.05},
		{wire.TypeStatistics, 0.02, 0.08},
		{wire.TypeSecurityStatus, 0.0005, 0.01},
	} {
		if s := share(c.typ); s < c.lo || s > c.hi {
			t.Errorf("type %d is %.4f of the mix, want %.4f..%.4f", c.typ, s, c.lo, c.hi)
		}
	}
	t.Logf("mix: %v", types)
	// Popularity: the hottest 5%% of symbols carry far more than 5%% of traffic.
	sort.Sort(sort.Reverse(sort.IntSlice(perSym)))
	top := 0
	for _, c := range perSym[:symbols/20] {
		top += c
	}
	if f := float64(top) / n; f < 0.3 {
		t.Errorf("hottest 5%% of symbols carry %.2f of the traffic, want skew (>= 0.3)", f)
	} else {
		t.Logf("hottest 5%% of symbols carry %.2f of the traffic; coldest has %d messages", f, perSym[symbols-1])
	}
}

func TestGeneratorSmallTotal(t *testing.T) {
	// Total shorter than two rounds of symbols: closing prices follow the definitions.
	g := NewGenerator(GenConfig{Seed: 1, Symbols: 10, Total: 15})
	var m wire.Msg
	for i := 1; i <= 20; i++ {
		g.Next(&m)
		want := wire.TypeSecurityDefinition
		if i > 10 && i <= 15 {
			want = wire.TypeClosingPrice
		}
		if i <= 15 && m.Type != want {
			t.Fatalf("seq %d: type %d, want %d", i, m.Type, want)
		}
	}
}

func TestGenConfigValidate(t *testing.T) {
	for _, c := range []GenConfig{{Symbols: -1}, {Symbols: 1, ZipfS: 0.5}, {Symbols: 1, ZipfV: 0.5}, {Symbols: 1, TickTime: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

func BenchmarkGeneratorNext(b *testing.B) {
	g := NewGenerator(GenConfig{Seed: 1, Symbols: 2000})
	var m wire.Msg
	for range 2000 {
		g.Next(&m) // past the definitions
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g.Next(&m)
	}
}
