package latency

import (
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// DefaultBuckets are the classic bucket bounds (seconds) a Collector exposes:
// 1 µs to ~16 s doubling.
var DefaultBuckets = prometheus.ExponentialBuckets(1e-6, 2, 25)

// nativeSchema is the native-histogram resolution: 2^(2^-3), ~9% wide buckets.
const nativeSchema = 3

// Collector exposes hop latencies as Prometheus histograms
// (<namespace>_hop_latency_seconds{hop="end_to_end"}). Each metric carries
// both classic buckets and native-histogram buckets, both computed from the
// HDR data at scrape time; recording costs nothing extra.
type Collector struct {
	desc    *prometheus.Desc
	errDesc *prometheus.Desc
	source  func() *Hops
	buckets []float64
	hops    []Hop
}

// NewCollector returns a Collector reading source at each scrape; source must
// return a Hops the collector may read while no one records into it (e.g.
// Recorder.Merged). buckets nil means DefaultBuckets. It exposes hops, the
// ones the daemon records (none given: every hop).
func NewCollector(namespace string, source func() *Hops, buckets []float64, hops ...Hop) *Collector {
	if buckets == nil {
		buckets = DefaultBuckets
	}
	if len(hops) == 0 {
		for i := Hop(0); i < NumHops; i++ {
			hops = append(hops, i)
		}
	}
	return &Collector{
		hops: hops,
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "hop_latency_seconds"),
			"Per-hop latency of delivered frames (from HDR histograms).", []string{"hop"}, nil),
		errDesc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "hop_latency_errors_total"),
			"Hop latencies not recorded: negative, missing or out of range stamps.", []string{"hop"}, nil),
		source:  source,
		buckets: buckets,
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.errDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	h := c.source()
	if h == nil {
		return
	}
	for _, i := range c.hops {
		ch <- &hdrMetric{desc: c.desc, hop: i.Key(), h: buildHistogram(h, i, c.buckets)}
		ch <- prometheus.MustNewConstMetric(c.errDesc, prometheus.CounterValue, float64(h.Errors(i)), i.Key())
	}
}

// buildHistogram converts one hop's HDR counts into a dto.Histogram with
// classic cumulative buckets and native (sparse, exponential) buckets.
func buildHistogram(h *Hops, hop Hop, bounds []float64) *dto.Histogram {
	hh := h.Histogram(hop)
	total := hh.TotalCount()
	out := &dto.Histogram{
		SampleCount:   proto.Uint64(uint64(total)),
		SampleSum:     proto.Float64(hh.Mean() * float64(total) / 1e9),
		Schema:        proto.Int32(nativeSchema),
		ZeroThreshold: proto.Float64(1e-9),
		ZeroCount:     proto.Uint64(0),
	}
	cum := make([]uint64, len(bounds))
	native := map[int]int64{}
	var zero uint64
	if total > 0 {
		for _, bar := range hh.Distribution() {
			if bar.Count == 0 {
				continue
			}
			// A bar holds values From..To ns; place it by its upper edge.
			sec := float64(bar.To) / 1e9
			for j := len(bounds) - 1; j >= 0 && sec <= bounds[j]; j-- {
				cum[j] += uint64(bar.Count)
			}
			if bar.To <= 1 {
				zero += uint64(bar.Count)
				continue
			}
			native[nativeIndex(sec)] += bar.Count
		}
	}
	for j, b := range bounds {
		out.Bucket = append(out.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(cum[j])})
	}
	out.ZeroCount = proto.Uint64(zero)
	out.PositiveSpan, out.PositiveDelta = nativeSpans(native)
	if len(out.PositiveSpan) == 0 && zero == 0 {
		// An empty native histogram needs a no-op span to be recognized as native.
		out.PositiveSpan = []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(0)}}
	}
	return out
}

// nativeIndex is the native bucket holding v > 0 at nativeSchema:
// bucket i covers (2^((i-1)/8), 2^(i/8)].
func nativeIndex(v float64) int {
	return int(math.Ceil(math.Log2(v) * (1 << nativeSchema)))
}

// nativeSpans encodes sparse bucket counts as spans and count deltas.
func nativeSpans(b map[int]int64) ([]*dto.BucketSpan, []int64) {
	if len(b) == 0 {
		return nil, nil
	}
	idx := make([]int, 0, len(b))
	for i := range b {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var spans []*dto.BucketSpan
	var deltas []int64
	var prevCount int64
	prev := 0
	for k, i := range idx {
		switch {
		case k == 0:
			spans = append(spans, &dto.BucketSpan{Offset: proto.Int32(int32(i)), Length: proto.Uint32(1)})
		case i-prev <= 3: // fill a small gap with empty buckets rather than a new span
			for g := prev + 1; g < i; g++ {
				deltas = append(deltas, -prevCount)
				prevCount = 0
			}
			*spans[len(spans)-1].Length += uint32(i - prev)
		default:
			spans = append(spans, &dto.BucketSpan{Offset: proto.Int32(int32(i - prev - 1)), Length: proto.Uint32(1)})
		}
		deltas = append(deltas, b[i]-prevCount)
		prevCount, prev = b[i], i
	}
	return spans, deltas
}

// hdrMetric is a const histogram metric carrying classic and native buckets.
type hdrMetric struct {
	desc *prometheus.Desc
	hop  string
	h    *dto.Histogram
}

func (m *hdrMetric) Desc() *prometheus.Desc { return m.desc }

func (m *hdrMetric) Write(out *dto.Metric) error {
	out.Label = []*dto.LabelPair{{Name: proto.String("hop"), Value: proto.String(m.hop)}}
	out.Histogram = m.h
	return nil
}
