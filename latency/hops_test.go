package latency

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tickrelay/wire"
)

const base = int64(1_700_000_000_000_000_000)

// rootDwell is synth's time inside the root (RootSend - RootRecv), ns.
const rootDwell = 1000

// synth builds stamps whose hops are exactly a, b, c, d ns (offset applied
// to the child clock).
func synth(exchRoot, rootChild, childClient, offset int64) (wire.Stamps, int64) {
	st := wire.Stamps{ExchSend: base}
	st.RootRecv = st.ExchSend + exchRoot
	st.RootSend = st.RootRecv + rootDwell
	st.ChildRecv = st.RootSend + rootChild + offset
	st.ChildSend = st.ChildRecv + 500
	return st, st.ChildSend + childClient
}

// within reports whether got is v at HDR precision (3 significant digits).
func within(got, want int64) bool {
	return math.Abs(float64(got-want)) <= float64(want)/1000+1
}

func TestHopsPercentiles(t *testing.T) {
	h := NewHops()
	const offset = 250_000 // child clock 250 µs ahead of root
	// Hop values 1..10000 µs uniformly: p50 = 5000 µs, p99 = 9900 µs, ...
	for i := int64(1); i <= 10000; i++ {
		st, recv := synth(i*1000, 2*i*1000, 3*i*1000, offset)
		h.Record(st, recv, offset)
	}
	s := h.Snapshot()
	if s.Frames != 10000 {
		t.Fatalf("frames %d", s.Frames)
	}
	for hop, mul := range map[Hop]int64{HopExchRoot: 1, HopRootChild: 2, HopChildClient: 3} {
		st := s.Hops[hop]
		if st.Count != 10000 || st.Errors != 0 {
			t.Fatalf("%s count %d errors %d", hop, st.Count, st.Errors)
		}
		for _, c := range []struct {
			name      string
			got, want int64
		}{
			{"p50", st.P50, 5000 * 1000 * mul}, {"p90", st.P90, 9000 * 1000 * mul},
			{"p99", st.P99, 9900 * 1000 * mul}, {"p99.9", st.P999, 9990 * 1000 * mul},
			{"max", st.Max, 10000 * 1000 * mul}, {"min", st.Min, 1000 * mul},
		} {
			if !within(c.got, c.want) {
				t.Errorf("%s %s = %d, want %d", hop, c.name, c.got, c.want)
			}
		}
	}
	if r := s.Hops[HopRoot]; r.Count != 10000 || r.Errors != 0 || !within(r.P50, rootDwell) || !within(r.Max, rootDwell) {
		t.Errorf("root: %+v", r)
	}
	// End to end = all three hops plus root and child dwell (1000 + 500 ns),
	// on uncorrected clocks (offset included).
	if e := s.Hops[HopEndToEnd]; !within(e.P50, 6*5000*1000+1500+offset) || !within(e.Max, 6*10000*1000+1500+offset) {
		t.Errorf("end-to-end p50 %d max %d", e.P50, e.Max)
	}
}

func TestHopsErrorsNotRecorded(t *testing.T) {
	h := NewHops()
	st, recv := synth(1000, 1000, 1000, 0)
	h.Record(st, recv, 0)

	bad := st
	bad.RootRecv = bad.ExchSend - 5 // root before exchange: negative
	h.Record(bad, recv, 0)

	late := st
	late.ChildRecv = late.RootSend + MaxLatency + 1 // beyond the range
	h.Record(late, late.ChildSend+10, 0)

	h.Record(st, st.ChildSend-1, 0) // client clock behind child: negative child->client

	// A peer frame: only the publisher stamp, the rest not taken.
	h.Record(wire.Stamps{ExchSend: base}, base+7000, 0)
	// Garbage clientRecv before exchange: end-to-end negative.
	h.Record(wire.Stamps{ExchSend: base}, base-1, 0)

	s := h.Snapshot()
	want := map[Hop][2]int64{ // count, errors
		HopExchRoot:    {3, 1},
		HopRoot:        {4, 0},
		HopRootChild:   {3, 1},
		HopChildClient: {3, 1},
		HopEndToEnd:    {5, 1},
	}
	for hop, w := range want {
		if got := s.Hops[hop]; got.Count != w[0] || got.Errors != w[1] {
			t.Errorf("%s: count %d errors %d, want %d %d", hop, got.Count, got.Errors, w[0], w[1])
		}
	}
	if s.Hops[HopExchRoot].Min < 0 || s.Hops[HopChildClient].Max > MaxLatency {
		t.Errorf("garbage recorded: %+v", s.Hops)
	}
}

func TestHopsRecordAllocs(t *testing.T) {
	h := NewHops()
	st, recv := synth(1000, 2000, 3000, 0)
	bad := st
	bad.RootRecv = 1
	if n := testing.AllocsPerRun(1000, func() {
		h.Record(st, recv, 0)
		h.Record(bad, recv, 0)
	}); n != 0 {
		t.Fatalf("Record allocates %v per call", n)
	}
	r := NewRecorder(4)
	if n := testing.AllocsPerRun(1000, func() { r.Record(3, st, recv, 0) }); n != 0 {
		t.Fatalf("Recorder.Record allocates %v per call", n)
	}
}

func TestHopsMergeJSONTable(t *testing.T) {
	a, b := NewHops(), NewHops()
	for i := int64(1); i <= 100; i++ {
		st, recv := synth(i*1000, i*1000, i*1000, 0)
		a.Record(st, recv, 0)
		st, recv = synth(i*100_000, i*100_000, i*100_000, 0)
		b.Record(st, recv, 0)
	}
	b.RecordHop(HopExchRoot, -1)
	a.Merge(b)
	if a.Frames() != 200 || a.Count(HopExchRoot) != 200 || a.Errors(HopExchRoot) != 1 {
		t.Fatalf("merge: frames %d count %d errors %d", a.Frames(), a.Count(HopExchRoot), a.Errors(HopExchRoot))
	}

	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var c Hops
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if c.Snapshot() != a.Snapshot() {
		t.Fatalf("JSON round trip differs:\n%+v\n%+v", c.Snapshot(), a.Snapshot())
	}

	var buf bytes.Buffer
	if err := a.Snapshot().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"hop (us)", "p99.9", "exch->root", "end-to-end", "  100.0 "} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	r := NewRecorder(3)
	for i := 0; i < 9; i++ {
		st, recv := synth(1000, 1000, 1000, 0)
		r.Record(i, st, recv, 0)
	}
	if m := r.Merged(); m.Frames() != 9 || m.Count(HopEndToEnd) != 9 {
		t.Fatalf("recorder merged %d frames", m.Frames())
	}
}

func TestCollector(t *testing.T) {
	h := NewHops()
	for i := int64(1); i <= 1000; i++ {
		st, recv := synth(i*1000, 10_000, 20_000, 0)
		h.Record(st, recv, 0)
	}
	h.RecordHop(HopRootChild, -3)
	c := NewCollector("tickrelay", func() *Hops { return h.Clone() }, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 2 || len(mfs[0].Metric) != int(NumHops) || len(mfs[1].Metric) != int(NumHops) {
		t.Fatalf("gather: %d families, %v", len(mfs), err)
	}
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "tickrelay_hop_latency_errors_total" {
			for _, m := range mf.Metric {
				if m.Label[0].GetValue() == "root_child" && m.Counter.GetValue() != 1 {
					t.Errorf("root_child errors %v", m.Counter.GetValue())
				}
			}
		}
		if mf.GetName() != "tickrelay_hop_latency_seconds" {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() != "exch_root" {
				continue
			}
			found = true
			checkHistogram(t, m.Histogram)
		}
	}
	if !found {
		t.Fatal("no exch_root histogram")
	}
}

func checkHistogram(t *testing.T, hg *dto.Histogram) {
	t.Helper()
	if hg.GetSampleCount() != 1000 {
		t.Fatalf("count %d", hg.GetSampleCount())
	}
	if s := hg.GetSampleSum(); math.Abs(s-0.5005) > 0.001 { // mean 500.5 µs * 1000
		t.Errorf("sum %v", s)
	}
	// Classic: values 1..1000 µs; le=256µs bucket holds ~256 of them.
	var prev uint64
	for _, b := range hg.Bucket {
		if b.GetCumulativeCount() < prev {
			t.Fatalf("buckets not cumulative")
		}
		prev = b.GetCumulativeCount()
		if math.Abs(b.GetUpperBound()-256e-6) < 1e-9 && (prev < 250 || prev > 260) {
			t.Errorf("le=256us holds %d", prev)
		}
	}
	if prev != 1000 {
		t.Errorf("last bucket %d", prev)
	}
	// Native: the deltas add back up to the total count.
	var sum, cur int64
	for _, d := range hg.PositiveDelta {
		cur += d
		if cur < 0 {
			t.Fatalf("negative native bucket")
		}
		sum += cur
	}
	var n uint32
	for _, sp := range hg.PositiveSpan {
		n += sp.GetLength()
	}
	if sum != 1000 || int(n) != len(hg.PositiveDelta) || hg.GetSchema() != nativeSchema {
		t.Errorf("native buckets sum %d, span lengths %d vs %d deltas", sum, n, len(hg.PositiveDelta))
	}
}

func BenchmarkHopsRecord(b *testing.B) {
	h := NewHops()
	st, recv := synth(10_000, 20_000, 30_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		h.Record(st, recv, 0)
	}
}

func TestRecordHopNAllocs(t *testing.T) {
	r := NewRecorder(3)
	st, recv := synth(1000, 2000, 3000, 0)
	batch := []wire.Stamps{st, st, st}
	if n := testing.AllocsPerRun(1000, func() {
		r.RecordHopN(2, HopChild, 12_345, 64)
		r.RecordHopN(1, HopChild, -1, 3) // out of range: errors, still no allocation
		r.RecordBatch(0, batch, 0, 0)
		r.RecordBatch(0, batch, recv, 0)
	}); n != 0 {
		t.Fatalf("recording allocates %v per run", n)
	}
	h := r.Merged()
	if h.Count(HopChild) != (64+6)*1001 || h.Errors(HopChild) != 3*1001 { // + 2 batches of 3 full stamps
		t.Fatalf("child hop count %d errors %d", h.Count(HopChild), h.Errors(HopChild))
	}
}

// TestRecorderWarmup: frames sent within the warm-up of the first frame are
// counted as skipped and kept out of the histograms; later ones are recorded.
func TestRecorderWarmup(t *testing.T) {
	r := NewRecorder(2)
	r.SetWarmup(time.Second)
	var st []wire.Stamps
	for ms := int64(0); ms < 3000; ms += 10 { // 300 frames over 3 s
		s, _ := synth(1000, 1000, 1000, 0)
		s.ExchSend += ms * 1e6
		st = append(st, s)
	}
	for i := 0; i < len(st); i += 7 {
		batch := st[i:min(i+7, len(st))]
		r.RecordBatch(i, batch, batch[len(batch)-1].ChildSend+1000, 0)
	}
	if got := r.Merged().Frames(); got != 200 {
		t.Errorf("recorded %d frames, want the 200 after the first second", got)
	}
	if got := r.Skipped(); got != 100 {
		t.Errorf("skipped %d, want 100", got)
	}
	r.Reset()
	if r.Skipped() != 0 || r.Merged().Frames() != 0 {
		t.Error("Reset kept warm-up state")
	}
}
