// Hops: per-hop latency histograms (see doc.go for the hop definitions).

package latency

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"tickrelay/wire"
)

// Hop names one measured segment of a frame's path.
type Hop int

// The hops, in path order, and the end-to-end total. HopRoot is the time
// inside the root (RootSend - RootRecv: ring, hand-off to a relay loop,
// batching) and HopChild the time inside a child (ChildSend - ChildRecv:
// parse, queue, fan-out); the others cross a socket.
const (
	HopExchRoot Hop = iota
	HopRoot
	HopRootChild
	HopChild
	HopChildClient
	HopEndToEnd
	NumHops
)

// PathHops are the hops a frame crosses between machines, and the total
// (what the plot shows, one panel each).
var PathHops = [...]Hop{HopExchRoot, HopRootChild, HopChildClient, HopEndToEnd}

var hopNames = [NumHops]string{"exch->root", "root", "root->child", "child", "child->client", "end-to-end"}

// hopKeys are the hop names usable in metric labels and JSON keys.
var hopKeys = [NumHops]string{"exch_root", "root", "root_child", "child", "child_client", "end_to_end"}

func (h Hop) String() string {
	if h < 0 || h >= NumHops {
		return fmt.Sprintf("hop(%d)", int(h))
	}
	return hopNames[h]
}

// Key is the hop's identifier in metric labels and JSON ("end_to_end").
func (h Hop) Key() string {
	if h < 0 || h >= NumHops {
		return h.String()
	}
	return hopKeys[h]
}

// Histogram geometry: 1 ns to MaxLatency at 3 significant digits (~230 KB
// per histogram, NumHops per Hops).
const (
	MaxLatency = int64(60 * time.Second)
	sigFigs    = 3
)

// Hops holds one HDR histogram per hop plus error counts.
// The zero value is not usable; call NewHops.
type Hops struct {
	h      [NumHops]*hdrhistogram.Histogram
	errs   [NumHops]int64
	frames int64
}

// NewHops returns empty histograms.
func NewHops() *Hops {
	var h Hops
	for i := range h.h {
		h.h[i] = hdrhistogram.New(1, MaxLatency, sigFigs)
	}
	return &h
}

// Record adds the hops of one frame received at clientRecv (ns). offset is
// the child's clock minus the root's (0 on one host). It allocates nothing.
func (h *Hops) Record(st wire.Stamps, clientRecv, offset int64) {
	h.frames++
	if st.ExchSend != 0 && st.RootRecv != 0 {
		h.record(HopExchRoot, st.RootRecv-st.ExchSend)
	}
	if st.RootRecv != 0 && st.RootSend != 0 {
		h.record(HopRoot, st.RootSend-st.RootRecv)
	}
	if st.RootSend != 0 && st.ChildRecv != 0 {
		h.record(HopRootChild, st.ChildRecv-st.RootSend-offset)
	}
	if st.ChildRecv != 0 && st.ChildSend != 0 {
		h.record(HopChild, st.ChildSend-st.ChildRecv)
	}
	if st.ChildSend != 0 && clientRecv != 0 {
		h.record(HopChildClient, clientRecv-st.ChildSend)
	}
	if st.ExchSend != 0 && clientRecv != 0 {
		h.record(HopEndToEnd, clientRecv-st.ExchSend)
	}
}

// RecordHop adds one latency to one hop (negative or too large counts as an error).
func (h *Hops) RecordHop(hop Hop, ns int64) { h.record(hop, ns) }

// RecordHopN adds n equal latencies to one hop (all errors if out of range).
// It does not count frames. It allocates nothing.
func (h *Hops) RecordHopN(hop Hop, ns, n int64) {
	if n <= 0 {
		return
	}
	if ns < 0 || ns > MaxLatency || h.h[hop].RecordValues(ns, n) != nil {
		h.errs[hop] += n
	}
}

func (h *Hops) record(hop Hop, v int64) {
	// Range-check here: hdrhistogram's error path allocates (fmt.Errorf).
	if v < 0 || v > MaxLatency {
		h.errs[hop]++
		return
	}
	if h.h[hop].RecordValue(v) != nil {
		h.errs[hop]++
	}
}

// Frames is the number of Record calls.
func (h *Hops) Frames() int64 { return h.frames }

// Count is the number of latencies recorded for hop.
func (h *Hops) Count(hop Hop) int64 { return h.h[hop].TotalCount() }

// Errors is the number of latencies rejected for hop.
func (h *Hops) Errors(hop Hop) int64 { return h.errs[hop] }

// Histogram exposes hop's histogram (read-only use; do not keep it past the
// next Record).
func (h *Hops) Histogram(hop Hop) *hdrhistogram.Histogram { return h.h[hop] }

// Merge adds o into h.
func (h *Hops) Merge(o *Hops) {
	h.frames += o.frames
	for i := range h.h {
		h.errs[i] += o.errs[i]
		h.errs[i] += h.h[i].Merge(o.h[i])
	}
}

// Reset empties h.
func (h *Hops) Reset() {
	h.frames = 0
	for i := range h.h {
		h.h[i].Reset()
		h.errs[i] = 0
	}
}

// Clone returns an independent copy.
func (h *Hops) Clone() *Hops {
	c := &Hops{errs: h.errs, frames: h.frames}
	for i := range h.h {
		c.h[i] = h.h[i].Clone()
	}
	return c
}

// HopStats summarizes one hop, latencies in ns.
type HopStats struct {
	Hop    string  `json:"hop"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	Min    int64   `json:"min_ns"`
	Mean   float64 `json:"mean_ns"`
	P50    int64   `json:"p50_ns"`
	P90    int64   `json:"p90_ns"`
	P99    int64   `json:"p99_ns"`
	P999   int64   `json:"p99_9_ns"`
	Max    int64   `json:"max_ns"`
}

// Snapshot is the summary of a Hops: what results JSON and tables show.
type Snapshot struct {
	Frames int64             `json:"frames"`
	Hops   [NumHops]HopStats `json:"hops"`
}

// Snapshot computes percentiles of every hop.
func (h *Hops) Snapshot() Snapshot {
	s := Snapshot{Frames: h.frames}
	for i, hh := range h.h {
		st := HopStats{Hop: Hop(i).Key(), Count: hh.TotalCount(), Errors: h.errs[i]}
		if st.Count > 0 {
			v := hh.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
			st.Min, st.Mean, st.Max = hh.Min(), hh.Mean(), hh.Max()
			st.P50, st.P90, st.P99, st.P999 = v[0], v[1], v[2], v[3]
		}
		s.Hops[i] = st
	}
	return s
}

// WriteTable writes a compact fixed-width table, one row per hop, times in µs.
func (s Snapshot) WriteTable(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "%-14s %10s %7s %9s %9s %9s %9s %9s\n",
		"hop (us)", "count", "errors", "p50", "p90", "p99", "p99.9", "max"); err != nil {
		return err
	}
	for i, st := range s.Hops {
		if st.Count == 0 && st.Errors == 0 {
			continue
		}
		if _, err := fmt.Fprintf(w, "%-14s %10d %7d %9s %9s %9s %9s %9s\n", Hop(i).String(), st.Count, st.Errors,
			Micros(st.P50), Micros(st.P90), Micros(st.P99), Micros(st.P999), Micros(st.Max)); err != nil {
			return err
		}
	}
	return nil
}

// us formats ns as microseconds with 1 decimal.
// Micros formats ns as microseconds with one decimal.
func Micros(ns int64) string { return fmt.Sprintf("%.1f", float64(ns)/1e3) }

// hopsJSON is the lossless wire form of Hops: compressed HDR V2 encodings.
type hopsJSON struct {
	Frames int64           `json:"frames"`
	Errors [NumHops]int64  `json:"errors"`
	HDR    [NumHops]string `json:"hdr"` // HDR V2 compressed encoding, base64
	Stats  *Snapshot       `json:"stats,omitempty"`
}

// MarshalJSON encodes h losslessly (HDR V2 encoding per hop) along with its
// Snapshot, so another process can Merge it.
func (h *Hops) MarshalJSON() ([]byte, error) {
	s := h.Snapshot()
	j := hopsJSON{Frames: h.frames, Errors: h.errs, Stats: &s}
	for i, hh := range h.h {
		b, err := hh.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("perf: encode %s: %w", Hop(i), err)
		}
		j.HDR[i] = string(b)
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (h *Hops) UnmarshalJSON(data []byte) error {
	var j hopsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	n := NewHops()
	n.frames, n.errs = j.Frames, j.Errors
	for i, enc := range j.HDR {
		if enc == "" {
			continue
		}
		d, err := hdrhistogram.Decode([]byte(enc))
		if err != nil {
			return fmt.Errorf("perf: hops %s: %w", Hop(i), err)
		}
		n.errs[i] += n.h[i].Merge(d)
	}
	*h = *n
	return nil
}

// Recorder is a Hops safe for concurrent use: Record goes to one of several
// locked shards chosen by the caller's key (a connection index), so writers
// rarely contend; Merged sums the shards.
type Recorder struct {
	shards []recShard
	// Warm-up: frames sent (ExchSend) before first+warmup are counted in
	// skipped, not recorded; first is the earliest ExchSend of the first
	// batch recorded.
	warmup  int64
	first   atomic.Int64
	skipped atomic.Int64
}

type recShard struct {
	mu sync.Mutex
	h  *Hops
	_  [40]byte // keep neighbouring locks off one cache line
}

// NewRecorder returns a Recorder with n shards (at least 1).
func NewRecorder(n int) *Recorder {
	if n < 1 {
		n = 1
	}
	r := &Recorder{shards: make([]recShard, n)}
	for i := range r.shards {
		r.shards[i].h = NewHops()
	}
	return r
}

// Record adds one frame into shard key%n. It allocates nothing.
func (r *Recorder) Record(key int, st wire.Stamps, clientRecv, offset int64) {
	s := &r.shards[uint(key)%uint(len(r.shards))]
	s.mu.Lock()
	s.h.Record(st, clientRecv, offset)
	s.mu.Unlock()
}

// RecordBatch adds frames that all arrived at clientRecv under one lock.
func (r *Recorder) RecordBatch(key int, st []wire.Stamps, clientRecv, offset int64) {
	from := int64(0)
	if r.warmup > 0 && len(st) > 0 {
		first := r.first.Load()
		if first == 0 {
			r.first.CompareAndSwap(0, st[0].ExchSend)
			first = r.first.Load()
		}
		from = first + r.warmup
	}
	s := &r.shards[uint(key)%uint(len(r.shards))]
	skipped := 0
	s.mu.Lock()
	for i := range st {
		if st[i].ExchSend < from {
			skipped++
			continue
		}
		s.h.Record(st[i], clientRecv, offset)
	}
	s.mu.Unlock()
	if skipped > 0 {
		r.skipped.Add(int64(skipped))
	}
}

// With runs f on shard key%n's Hops under the shard's lock: many
// latencies for one lock. f must not keep h. It allocates nothing.
func (r *Recorder) With(key int, f func(h *Hops)) {
	s := &r.shards[uint(key)%uint(len(r.shards))]
	s.mu.Lock()
	f(s.h)
	s.mu.Unlock()
}

// SetWarmup makes RecordBatch skip the frames sent within d of the first
// frame it sees: a step's start-up transient (connections' first writes,
// caches and page faults of fresh processes) is not its steady state. Call
// it before recording.
func (r *Recorder) SetWarmup(d time.Duration) { r.warmup = int64(d) }

// Skipped is the number of frames RecordBatch left out as warm-up.
func (r *Recorder) Skipped() int64 { return r.skipped.Load() }

// RecordHopN adds n equal latencies of one hop into shard key%n
// (Hops.RecordHopN). It allocates nothing.
func (r *Recorder) RecordHopN(key int, hop Hop, ns, n int64) {
	s := &r.shards[uint(key)%uint(len(r.shards))]
	s.mu.Lock()
	s.h.RecordHopN(hop, ns, n)
	s.mu.Unlock()
}

// Merged returns a new Hops holding the sum of every shard.
func (r *Recorder) Merged() *Hops {
	out := NewHops()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}

// Reset empties every shard.
func (r *Recorder) Reset() {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		s.h.Reset()
		s.mu.Unlock()
	}
	r.first.Store(0)
	r.skipped.Store(0)
}
