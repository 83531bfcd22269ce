package child

import (
	"fmt"
	"testing"

	"tickrelay/wire"
)

// BenchmarkParseToText is the per-item cost of the parse-once core: decode,
// text frame, history and image update. 0 allocs/op in steady state.
func BenchmarkParseToText(b *testing.B) {
	c := NewCore(1<<16, 16<<20)
	const n = 4096
	items := make([]wire.Item, n)
	for i := range items {
		seq := uint64(i + 1)
		body := testBody(seq)
		h, _ := wire.ParseFeedBody(body)
		items[i] = wire.Item{Seq: seq, ExchSend: h.SendTime, RootRecv: 5, Body: body}
	}
	bt := getBatch()
	for i := range items { // warm: every symbol seen, buffers grown
		c.Apply(bt, &items[i], 6, 7)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(items[0].Body)))
	b.ResetTimer()
	seq := uint64(n)
	for i := 0; i < b.N; i++ {
		if i%256 == 0 {
			bt.buf, bt.frames = bt.buf[:0], bt.frames[:0]
		}
		it := items[i%n]
		seq++
		it.Seq = seq // seqs keep following so the history stays one run
		c.Apply(bt, &it, 6, 7)
	}
}

// BenchmarkFanoutLoop is one loop's drain of a 64-frame batch to 1000
// subscribers (50 per symbol plus 20 on "*"): arena copy and hand-off.
func BenchmarkFanoutLoop(b *testing.B) {
	for _, subs := range []int{1000} {
		b.Run(fmt.Sprint(subs), func(b *testing.B) {
			c := NewCore(1<<16, 16<<20)
			bt := getBatch()
			for s := uint64(1); s <= 64; s++ {
				body := testBody(s)
				it := wire.Item{Seq: s, RootRecv: 5, Body: body}
				c.Apply(bt, &it, 6, 7)
			}
			f := newFanout()
			clients := make([]*client, subs)
			for i := range clients {
				clients[i] = &client{}
				if i < 20 {
					f.subscribe(clients[i], 0, nil, true, 0)
					continue
				}
				sym := wire.AppendSymbol(nil, uint32(i%testSymbols)+1)
				f.subscribe(clients[i], SymbolHash(sym), sym, false, 0)
			}
			drain := func() { // flush without the writes
				for _, cl := range f.dirty {
					f.take(cl)
				}
				f.flushed()
			}
			f.add(bt, 1) // warm: buffers grown
			drain()
			f.frames = 0
			b.ReportAllocs()
			b.SetBytes(int64(len(bt.buf)))
			b.ResetTimer()
			var copies uint64
			for i := 0; i < b.N; i++ {
				f.add(bt, 1)
				drain()
				copies += f.frames
				f.frames = 0
			}
			b.ReportMetric(float64(copies)/float64(b.N), "copies/op")
		})
	}
}
