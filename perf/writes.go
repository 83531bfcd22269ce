package perf

import (
	"context"
	"fmt"
	"strings"
	"time"

	"tickrelay/latency"
)

// README markers of the write-path step's table.
const (
	WritesBegin = "<!-- perf-writes:begin -->"
	WritesEnd   = "<!-- perf-writes:end -->"
)

// WritesResults compares the children's client write paths (-writes) in
// one run: the same tickrelay step with each, the paths taking turns.
type WritesResults struct {
	Started time.Time    `json:"started"`
	Command string       `json:"command"`
	Paths   []string     `json:"paths"`
	Steps   []StepResult `json:"steps"`
}

// RunWrites runs the sweep's tickrelay step at rate repeats times per
// path, interleaved; results in Out/writes.json and the README between
// the write-path markers.
func RunWrites(ctx context.Context, cfg Config, rate int, paths []string) (*WritesResults, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &WritesResults{Started: time.Now().UTC(), Command: cfg.Command, Paths: paths}
	bar := newProgress(cfg.Progress, len(paths)*cfg.Repeats)
	defer bar.done()
	runs := map[string][]int{}
	for rep := 1; rep <= cfg.Repeats; rep++ {
		for _, w := range paths {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			sc := Scenario{System: SystemTickrelay, Rate: rate, Clients: cfg.Clients, SubsPerClient: cfg.SubsPerClient,
				Children: cfg.Children, Symbols: cfg.Symbols, Seed: cfg.Seed, Duration: cfg.Duration, Warmup: cfg.Warmup,
				HarnessMode: cfg.HarnessMode, Writes: w}
			runs[w] = append(runs[w], len(res.Steps))
			res.Steps = append(res.Steps, runRound(ctx, cfg, sc, rep, bar, len(res.Steps)))
		}
	}
	for _, idx := range runs {
		markMedian(res.Steps, idx)
	}
	return res, saveStep(cfg, "writes.json", res, WritesBegin, WritesEnd, WritesTable(res))
}

// WritesTable renders each path's median step (by e2e p99) and the range
// over its runs of the two figures that decide.
func WritesTable(res *WritesResults) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `%s`: ", res.Started.Format("2006-01-02"), res.Command)
	if len(res.Steps) > 0 {
		sc := res.Steps[0].Scenario
		fmt.Fprintf(&b, "tickrelay at %s, %d clients x %d symbol(s), %d child(ren), each child -writes path in turn, %d runs each; median by e2e p99.\n\n",
			sc.RateLabel(), sc.Clients, sc.SubsPerClient, sc.Children, len(res.Steps)/max(len(res.Paths), 1))
	}
	b.WriteString("| -writes | deliveries/s | deliveries per server CPU-s | per child CPU-s (runs) | child->client p50 µs | p99 µs (runs) | e2e p99 µs | frames/write |\n|---|---|---|---|---|---|---|---|\n")
	for _, w := range res.Paths {
		var perChild, p99s []string
		var med *StepResult
		for i := range res.Steps {
			st := &res.Steps[i]
			if st.Writes != w {
				continue
			}
			if st.Err != "" {
				perChild, p99s = append(perChild, "error"), append(p99s, "error")
				continue
			}
			perChild = append(perChild, fmt.Sprintf("%.0fk", childPerSec(st)/1e3))
			p99s = append(p99s, latency.Micros(st.Latency.Hops[latency.HopChildClient].P99))
			if !st.Spare {
				med = st
			}
		}
		if med == nil {
			fmt.Fprintf(&b, "| %s | error | | | | | | |\n", w)
			continue
		}
		cc, e := med.Latency.Hops[latency.HopChildClient], med.Latency.Hops[latency.HopEndToEnd]
		fmt.Fprintf(&b, "| %s | %.0f | %.0fk | %.0fk (%s) | %s | %s (%s) | %s | %.2f |\n", w, med.DeliveryRate,
			1e9/max(med.CPUPerDeliveryNs, 1)/1e3, childPerSec(med)/1e3, strings.Join(perChild, ", "),
			latency.Micros(cc.P50), latency.Micros(cc.P99), strings.Join(p99s, ", "), latency.Micros(e.P99), med.FramesPerWrite)
	}
	return b.String()
}

// childPerSec is deliveries per CPU-second of the children alone.
func childPerSec(st *StepResult) float64 {
	if st.ChildCPU <= 0 {
		return 0
	}
	return float64(st.Delivered) / st.ChildCPU.Seconds()
}
