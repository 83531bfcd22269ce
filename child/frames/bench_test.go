package frames

import (
	"testing"

	"tickrelay/internal/feedtest"
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
		body := feedtest.Body(seq)
		h, _ := wire.ParseFeedBody(body)
		items[i] = wire.Item{Seq: seq, ExchSend: h.SendTime, RootRecv: 5, Body: body}
	}
	bt := GetBatch()
	for i := range items { // warm: every symbol seen, buffers grown
		c.Apply(bt, &items[i], 6, 7)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(items[0].Body)))
	b.ResetTimer()
	seq := uint64(n)
	for i := 0; i < b.N; i++ {
		if i%256 == 0 {
			bt.Buf, bt.Frames = bt.Buf[:0], bt.Frames[:0]
		}
		it := items[i%n]
		seq++
		it.Seq = seq // seqs keep following so the history stays one run
		c.Apply(bt, &it, 6, 7)
	}
}
