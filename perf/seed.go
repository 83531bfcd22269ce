package perf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/latency"
	"tickrelay/wire"
)

// The seed's shape: the system tickrelay replaces ran one root and five
// children (10 ms a hop, 1.5 MB/s to each). This step measures the root's
// side of that alone: the exchange and the root as processes, and Lines
// relay lines that only count what they receive (in this process), so the
// figure is the root's fan-out and the relay hop, not five parsers
// starving two cores. What a child costs per item is the sweep's (its CPU
// per message, SeedResults.ChildNsPerItem).

// SeedConfig configures the seed-shape step.
type SeedConfig struct {
	Lines   int           // relay lines (children) on the root
	Clients int           // clients per child in the run with real children (0: no such run)
	Rate    int           // exchange msgs/s
	Repeats int           // runs; the median by the worst line's p99 is reported
	MaxP99  time.Duration // the goal for every line's root->child p99
}

// DefaultSeedConfig is the step `make perf` runs.
func DefaultSeedConfig() SeedConfig {
	return SeedConfig{Lines: 5, Clients: 10, Rate: 200_000, Repeats: 3, MaxP99: time.Millisecond}
}

// SeedLine is what one relay line received.
type SeedLine struct {
	Items int64   `json:"items"`
	Bytes int64   `json:"bytes"`
	MBps  float64 `json:"mb_per_s"` // relay bytes over the publishing time
	// RootChild is the root->child hop of every item after the warm-up:
	// the line's receive time minus the batch's root send stamp.
	RootChild latency.HopStats `json:"root_child"`
}

// SeedRun is one run of the step.
type SeedRun struct {
	Published       uint64        `json:"published"`
	Achieved        float64       `json:"achieved_rate"`
	Lines           []SeedLine    `json:"lines"`
	RootCPU         time.Duration `json:"root_cpu_ns"`
	RootNsPerItem   float64       `json:"root_ns_per_item"`
	ExchangeCPU     time.Duration `json:"exchange_cpu_ns"`
	WorstP99        int64         `json:"worst_p99_ns"`
	Err             string        `json:"error,omitempty"`
	PublishDuration time.Duration `json:"publish_ns"`
}

// SeedResults is the step's runs.
type SeedResults struct {
	Started time.Time  `json:"started"`
	Command string     `json:"command"`
	Config  SeedConfig `json:"config"`
	Runs    []SeedRun  `json:"runs"`
	Median  int        `json:"median"`
	// ChildNsPerItem is a child's CPU per exchange item in the sweep's
	// step nearest Rate (parse once, fan out to the sweep's clients);
	// 0 when the sweep did not run.
	ChildNsPerItem float64 `json:"child_ns_per_item,omitempty"`
	ChildClients   int     `json:"child_clients,omitempty"`
	// Children is one run of the same shape with real children, each
	// serving ChildClients clients of one symbol: what a child that
	// parses everything and serves few clients costs, on this box
	// together with the other four.
	Children *StepResult `json:"children,omitempty"`
}

// Pass reports whether the median run kept every line's p99 within MaxP99.
func (r *SeedResults) Pass() bool {
	if len(r.Runs) == 0 {
		return false
	}
	m := r.Runs[r.Median]
	return m.Err == "" && m.WorstP99 <= int64(r.Config.MaxP99)
}

// RunSeed runs the seed-shape step Repeats times.
func RunSeed(ctx context.Context, cfg Config, sd SeedConfig) (*SeedResults, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &SeedResults{Started: time.Now().UTC(), Command: cfg.Command, Config: sd}
	for range sd.Repeats {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		run, err := seedRun(ctx, cfg, sd)
		if err != nil {
			run.Err = err.Error()
			cfg.Logger.Warn("perf: seed-shape run failed", "err", err)
		}
		res.Runs = append(res.Runs, run)
	}
	idx := make([]int, len(res.Runs))
	for i := range idx {
		idx[i] = i
	}
	worst := func(i int) int64 {
		if res.Runs[i].Err != "" {
			return 1 << 62
		}
		return res.Runs[i].WorstP99
	}
	slices.SortFunc(idx, func(a, b int) int { return int(worst(a) - worst(b)) })
	res.Median = idx[(len(idx)-1)/2]
	if sd.Clients > 0 && ctx.Err() == nil {
		sc := Scenario{System: SystemTickrelay, Rate: sd.Rate, Clients: sd.Clients * sd.Lines, SubsPerClient: 1,
			Children: sd.Lines, Symbols: cfg.Symbols, Seed: cfg.Seed, Duration: cfg.Duration, Warmup: cfg.Warmup,
			HarnessMode: cfg.HarnessMode}
		st := runRound(ctx, cfg, sc, 1, newProgress(nil, 1), 0)
		res.Children = &st
	}
	return res, nil
}

// README markers of the seed-shape step's table.
const (
	SeedBegin = "<!-- perf-seed:begin -->"
	SeedEnd   = "<!-- perf-seed:end -->"
)

// WriteSeed saves res as Out/seed.json and its table in the README.
func WriteSeed(cfg Config, res *SeedResults) error {
	return saveStep(cfg, "seed.json", res, SeedBegin, SeedEnd, SeedTable(res))
}

// ChildCost is a child's CPU per exchange item in res's tickrelay step at
// the fixed rate nearest rate (its median run), and that step's clients.
func ChildCost(res *Results, rate int) (ns float64, clients int) {
	best := -1
	for i, st := range res.Steps {
		if st.System != SystemTickrelay || st.Spare || st.Probe || st.Max || st.WarmUp || st.Err != "" || st.ChildCPU == 0 || st.Published == 0 {
			continue
		}
		if best < 0 || abs(st.Rate-rate) < abs(res.Steps[best].Rate-rate) {
			best = i
		}
	}
	if best < 0 {
		return 0, 0
	}
	st := res.Steps[best]
	return float64(st.ChildCPU) / float64(max(st.Children, 1)) / float64(st.Published), st.Clients
}

func seedRun(ctx context.Context, cfg Config, sd SeedConfig) (SeedRun, error) {
	var run SeedRun
	dir, err := os.MkdirTemp("", "tickrelay-seed-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	exAddr, rootAddr := loopback(cfg.ExchangePort), loopback(cfg.RootPort)
	procs := &procGroup{ctx: ctx, cfg: cfg}
	defer procs.stop()
	rootAdmin, err := freeAddr()
	if err != nil {
		return run, err
	}
	exAdmin, err := freeAddr()
	if err != nil {
		return run, err
	}
	root, err := procs.start("root", rootAddr, rootArgs(cfg, exAddr, rootAddr, dir, rootAdmin)...)
	if err != nil {
		return run, err
	}
	sc := Scenario{Rate: sd.Rate, Symbols: cfg.Symbols, Seed: cfg.Seed}
	total := uint64(sd.Rate) * uint64(cfg.Duration/time.Millisecond) / 1000

	lctx, cancel := context.WithTimeout(ctx, 30*time.Second+3*cfg.Duration)
	defer cancel()
	lines := make([]*countLine, sd.Lines)
	for i := range lines {
		if lines[i], err = dialCountLine(lctx, rootAddr, "seed"+strconv.Itoa(i)); err != nil {
			return run, err
		}
		defer lines[i].conn.Close()
	}
	r0, _ := ReadProc(root.pid())
	var wg sync.WaitGroup
	errs := make([]error, len(lines))
	for i, l := range lines {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.run(total) }()
	}
	ex, err := procs.start("exchange", exAddr, exchangeArgs(sc, exAddr, exAdmin, total)...)
	if err != nil {
		return run, err
	}
	e0, _ := ReadProc(ex.pid())
	t0 := time.Now()
	warm := t0.Add(cfg.Warmup).UnixNano()
	for _, l := range lines {
		l.warm.Store(warm)
	}
	go func() { <-lctx.Done(); closeAll(lines) }() // a line still short at the deadline ends
	wg.Wait()
	run.PublishDuration = time.Since(t0)
	r1, _ := ReadProc(root.pid())
	e1, _ := ReadProc(ex.pid())
	run.Published = total
	run.Achieved = float64(total) / run.PublishDuration.Seconds()
	run.RootCPU, run.ExchangeCPU = r1.CPU-r0.CPU, e1.CPU-e0.CPU
	run.RootNsPerItem = float64(run.RootCPU) / float64(total)
	for i, l := range lines {
		sl := SeedLine{Items: l.items, Bytes: l.bytes, MBps: float64(l.bytes) / 1e6 / run.PublishDuration.Seconds(),
			RootChild: l.hops.Snapshot().Hops[latency.HopRootChild]}
		run.Lines = append(run.Lines, sl)
		run.WorstP99 = max(run.WorstP99, sl.RootChild.P99)
		if errs[i] != nil && err == nil {
			err = fmt.Errorf("line %d: %w", i, errs[i])
		}
	}
	return run, err
}

func closeAll(lines []*countLine) {
	for _, l := range lines {
		l.conn.Close()
	}
}

// countLine is a relay line that only counts: it asks the root for every
// item from seq 1 and records each batch's root->child hop.
type countLine struct {
	conn         net.Conn
	items, bytes int64
	hops         *latency.Hops
	warm         atomic.Int64 // receive time from which hops are recorded (after the warm-up)
}

func dialCountLine(ctx context.Context, addr, name string) (*countLine, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(wire.AppendHello(nil, wire.Hello{FromSeq: 1, Name: name})); err != nil {
		c.Close()
		return nil, err
	}
	l := &countLine{conn: c, hops: latency.NewHops()}
	l.warm.Store(math.MaxInt64)
	return l, nil
}

// run reads until it has total items.
func (l *countLine) run(total uint64) error {
	buf := make([]byte, 4<<20+wire.MaxRelayFrame)
	var have int
	var br wire.BatchReader
	for uint64(l.items) < total {
		n, err := l.conn.Read(buf[have:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("%d of %d items within the deadline", l.items, total)
			}
			return err
		}
		recv := time.Now().UnixNano()
		l.bytes += int64(n)
		have += n
		off := 0
		for {
			typ, p, k, err := wire.NextRelayFrame(buf[off:have])
			if errors.Is(err, wire.ErrShort) {
				break
			}
			if err != nil {
				return err
			}
			off += k
			switch typ {
			case wire.RelayBatch:
				br.Reset(p)
				if br.Err() != nil {
					return br.Err()
				}
				l.items += int64(br.Count)
				if recv >= l.warm.Load() {
					l.hops.RecordHopN(latency.HopRootChild, recv-br.RootSend, int64(br.Count))
				}
			case wire.RelayError:
				return wire.ParseRelayError(p)
			}
		}
		have = copy(buf, buf[off:have])
	}
	return nil
}

// SeedTable renders the median run, one row per line.
func SeedTable(res *SeedResults) string {
	var b strings.Builder
	sd := res.Config
	fmt.Fprintf(&b, "Measured %s by `%s`: the exchange simulator and the root as processes at %s, %d relay lines that only count what they receive; median of %d runs by the worst line's root->child p99.\n\n",
		res.Started.Format("2006-01-02"), res.Command, rateLabel(sd.Rate), sd.Lines, len(res.Runs))
	if len(res.Runs) == 0 {
		return b.String()
	}
	m := res.Runs[res.Median]
	if m.Err != "" {
		fmt.Fprintf(&b, "error: %s\n", oneLine(m.Err))
	}
	b.WriteString("| line | items | MB/s | root->child p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|---|\n")
	for i, l := range m.Lines {
		h := l.RootChild
		fmt.Fprintf(&b, "| %d | %d | %.2f | %s | %s | %s | %s |\n", i, l.Items, l.MBps,
			latency.Micros(h.P50), latency.Micros(h.P99), latency.Micros(h.P999), latency.Micros(h.Max))
	}
	verdict := "pass"
	if !res.Pass() {
		verdict = fmt.Sprintf("FAIL (worst p99 %s µs)", latency.Micros(m.WorstP99))
	}
	fmt.Fprintf(&b, "\nPublished %d at %.0f msgs/s. Root CPU %.0f ns per item for %d lines (exchange simulator %.0f ns). Goal root->child p99 under %v: %s.\n",
		m.Published, m.Achieved, m.RootNsPerItem, sd.Lines, float64(m.ExchangeCPU)/float64(max(m.Published, 1)), sd.MaxP99, verdict)
	if c := res.Children; c != nil {
		if c.Err != "" {
			fmt.Fprintf(&b, "With %d real children of %d clients each: error: %s.\n", c.Children, c.Clients/max(c.Children, 1), oneLine(c.Err))
		} else {
			rc, e := c.Latency.Hops[latency.HopRootChild], c.Latency.Hops[latency.HopEndToEnd]
			fmt.Fprintf(&b, "With %d real children of %d clients each on the same 2 CPUs: a child cost %.0f ns of CPU per item (parse once, %d clients), root->child p50 %s µs, p99 %s µs, e2e p99 %s µs, %.0f of %d msgs/s published.\n",
				c.Children, c.Clients/max(c.Children, 1), float64(c.ChildCPU)/float64(max(c.Children, 1))/float64(max(c.Published, 1)),
				c.Clients/max(c.Children, 1), latency.Micros(rc.P50), latency.Micros(rc.P99), latency.Micros(e.P99), c.AchievedRate, c.Rate)
		}
	}
	if res.ChildNsPerItem > 0 {
		fmt.Fprintf(&b, "A child cost %.0f ns of CPU per item in the sweep's step nearest %s (%d clients).\n",
			res.ChildNsPerItem, rateLabel(sd.Rate), res.ChildClients)
	}
	return b.String()
}
