package root

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"tickrelay/alert"
	"tickrelay/feed"
	"tickrelay/wire"
)

// BenchmarkRootAlerts is the alert engine's cost per feed item on the
// root: the item decoded, each field it updates matched against the
// standing alerts, fires and re-arms sequenced. The items are the
// simulator's over 17,000 symbols (a third or so update a watched field);
// 1M has a million repeat alerts within 5% of their symbols' prices (so
// the population stands still as they fire), none has none.
func BenchmarkRootAlerts(b *testing.B) {
	const syms, items = 17_000, 1 << 16
	g := feed.NewGenerator(feed.GenConfig{Seed: 5, Symbols: syms})
	var m wire.Msg
	bodies := make([][]byte, 0, items)
	price := map[uint32]int32{}
	for len(bodies) < items {
		g.Next(&m)
		f, ok := wire.AppendMsgFrame(nil, g.Seq(), 1, &m)
		if !ok {
			b.Fatal("frame")
		}
		bodies = append(bodies, f[wire.FeedLenSize:])
		if m.Type == wire.TypeTrade || m.Type == wire.TypeNominalPrice || m.Type == wire.TypeSecurityDefinition {
			price[m.Security] = max(m.Price, m.PrevClose)
		}
	}
	for _, n := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			r := benchRoot(b)
			set := r.relay.ctl.seq.Alerts()
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range n {
				code := uint32(1 + rng.IntN(syms))
				p := int64(max(price[code], 1000))
				d := alert.Def{Owner: fmt.Sprint("c", i/1000), ID: fmt.Sprint("a", i%1000), Sym: code,
					Field: alert.Field(rng.IntN(4)), Op: alert.Op(rng.IntN(2)), Repeat: true, Hyst: int32(max(p/200, 1))}
				away := p * int64(1+rng.IntN(50)) / 1000
				if d.Op == alert.AtOrAbove {
					d.Value = int32(p + away)
				} else {
					d.Value = int32(max(p-away, 1))
				}
				if err := set.Add(d, true); err != nil {
					b.Fatal(err)
				}
			}
			r.relay.ctl.standing.Store(int64(set.Len()))
			serial0 := r.relay.ctl.seq.Serial()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.relay.matchAlerts(uint64(i+1), bodies[i%items], 1)
			}
			b.ReportMetric(float64(r.relay.ctl.seq.Serial()-serial0)/float64(b.N), "records/op")
		})
	}
}
