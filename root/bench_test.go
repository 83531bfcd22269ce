package root

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"tickrelay/latency"
	"tickrelay/wire"
)

func benchBodies() [][]byte {
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = testBody(uint64(i))
	}
	return bodies
}

func BenchmarkRingAppend(b *testing.B) {
	r := mustRing(b, 1<<16)
	bodies := benchBodies()
	for seq := uint64(1); seq <= 1<<16; seq++ { // warm every slot
		r.Append(seq, 1, bodies[seq%64])
	}
	seq := uint64(1 << 16)
	b.ReportAllocs()
	b.SetBytes(int64(len(bodies[5])))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		seq++
		if err := r.Append(seq, int64(i), bodies[seq%64]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRingGet(b *testing.B) {
	r := mustRing(b, 1<<16)
	bodies := benchBodies()
	for seq := uint64(1); seq <= 1<<16; seq++ {
		r.Append(seq, 1, bodies[seq%64])
	}
	buf := make([]byte, 0, wire.MaxRelayItem)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var ok bool
		if buf, ok = r.Get(buf[:0], uint64(i)&(1<<16-1)+1); !ok {
			b.Fatal("miss")
		}
	}
}

// benchRoot is a root with a 64k ring that logs nothing; it is not run.
func benchRoot(b *testing.B) *Root {
	cfg := DefaultConfig()
	cfg.RingSize = 1 << 16
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkSessionRead measures the feed read path per item: frame
// decoding, validation, gap check, stamping and the ring append.
func BenchmarkSessionRead(b *testing.B) {
	r := benchRoot(b)
	s := newSession(r)
	const k = 1024
	var frames []byte
	var offs []int
	for i := 0; i < k; i++ {
		offs = append(offs, len(frames))
		frames = appendTestFrame(frames, uint64(i+1))
	}
	if len(frames) > feedBufSize {
		b.Fatal("frames do not fit the read buffer")
	}
	var conn bytes.Reader
	seq := uint64(0)
	run := func() {
		for _, o := range offs { // fresh seqs, as a live feed would send
			seq++
			binary.LittleEndian.PutUint64(frames[o+wire.FeedLenSize:], seq)
		}
		conn.Reset(frames)
		s.in.Reset()
		if err := s.in.Fill(&conn); err != nil || s.in.Buffered() != len(frames) {
			b.Fatal("fill", err)
		}
		if err := s.apply(); err != nil {
			b.Fatal(err)
		}
		s.flush()
	}
	for i := 0; i < (1<<16)/k; i++ { // warm the ring
		run()
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frames) / k))
	b.ResetTimer()
	for i := 0; i < b.N; i += k {
		run()
	}
}

// BenchmarkRelayBatch measures building relay batches (<= 64 KiB of items)
// from the ring, per batch.
func BenchmarkRelayBatch(b *testing.B) {
	r := mustRing(b, 1<<16)
	bodies := benchBodies()
	for seq := uint64(1); seq <= 1<<16; seq++ {
		r.Append(seq, 1, bodies[seq%64])
	}
	scratch := make([]byte, 0, 64<<10+wire.RelayBatchHeader+wire.MaxRelayItem)
	from := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, n, err := r.AppendBatch(scratch[:0], from, 64<<10, 2)
		if err != nil || n == 0 {
			b.Fatal(n, err)
		}
		b.SetBytes(int64(len(out)))
		if from += uint64(n); from > 1<<16-4096 {
			from = 1
		}
	}
}

// BenchmarkRelayDwell is the root hop's bookkeeping per relay batch sent
// (<= 64 KiB of items): reread each item's receive stamp and record
// RootSend minus it. 0 allocs/op.
func BenchmarkRelayDwell(b *testing.B) {
	r := benchRoot(b)
	for seq := uint64(1); seq <= 4096; seq++ { // bodies carry their seq: the batch rereads them
		r.ring.Append(seq, int64(seq)*1000, testBody(seq))
	}
	batch, n, err := r.ring.AppendBatch(nil, 1, 64<<10, 5_000_000)
	if err != nil {
		b.Fatal(err)
	}
	l := &loop{rl: r.relay}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.recordDwell(batch)
	}
	b.StopTimer()
	if got := r.Hops().Count(latency.HopRoot); got != int64(n)*int64(b.N) {
		b.Fatalf("recorded %d, want %d", got, int64(n)*int64(b.N))
	}
	b.ReportMetric(float64(n), "items/op")
}
