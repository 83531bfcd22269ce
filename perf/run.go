package perf

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tickrelay/feed"
	"tickrelay/latency"
	"tickrelay/perf/harness"
	"tickrelay/wire"
)

// Systems a run can measure.
const (
	SystemTickrelay = "tickrelay"
	SystemNATS      = "nats"
	SystemRedis     = "redis"
)

// Config is one `tickrelay perf` sweep.
type Config struct {
	// Rates are the target exchange rates in msgs/s, one step each; 0 = max.
	Rates []int
	// Clients are the subscriber connections; each subscribes to
	// SubsPerClient symbols, spread so every symbol has ~equal subscribers.
	Clients, SubsPerClient int
	// Children is the number of tickrelay child daemons (clients split evenly).
	Children int
	// Symbols is the number of securities in the feed.
	Symbols int
	// Seed makes the feed deterministic.
	Seed int64
	// Duration is the publishing time of each step.
	Duration time.Duration
	// Warmup is the start of each step whose frames are delivered and
	// counted but left out of the latency histograms (0: none).
	Warmup time.Duration
	// SweepWarmUp is the publishing time of one unshown step run before the
	// sweep (the first system at the first rate) to warm the host and the
	// load clients (0: none).
	SweepWarmUp time.Duration
	// Systems to measure, in order: "tickrelay", "nats", "redis". Redis is
	// skipped (with a note) when redis-server is not on PATH.
	Systems []string
	// Out is the results directory (results.json, latency.png); "" writes nothing.
	Out string
	// UpdateReadme is a README whose perf markers get the ratio table; "" skips.
	UpdateReadme string
	// HarnessMode is how the load clients read (goroutines or epoll).
	HarnessMode harness.Mode
	// Spawn starts the tickrelay processes; nil means SelfSpawner.
	Spawn Spawner
	// SpawnNATS starts the NATS peer (tickrelay-natspeer); nil means
	// NATSPeerSpawner. Without one, NATS is skipped with a note.
	SpawnNATS Spawner
	// NewSource makes the feed for a step; nil means NewFeedSource.
	// The tickrelay side uses the exchange simulator's own stream.
	NewSource func(symbols int, seed int64) Source
	// Repeats is how many times each fixed rate runs per system; the
	// median by end-to-end p99 is reported.
	Repeats int
	// MaxTries bounds the extra rates per system that search for the
	// highest sustained rate when Rates holds 0 ("max"); each is decided
	// by a majority of up to Repeats runs.
	MaxTries int
	// SustainP99 is the end-to-end p99 a step may not exceed to count as
	// sustained (with every message published on time and delivered).
	SustainP99 time.Duration
	// Ports of the tickrelay daemons: exchange, root, first child (children
	// take consecutive ports).
	ExchangePort, RootPort, ChildPort int
	// ChildArgs are extra flags for every tickrelay child (e.g. "-loops", "1").
	ChildArgs []string
	// RootArgs are extra flags for the tickrelay root (e.g. "-sync", "none").
	RootArgs []string
	// ServerNice is the nice value of the servers and feed sources (the
	// exchange simulator, the peers' publisher thread) relative to the
	// harness: below 0 they take priority over the load clients, as on
	// machines of their own (priority.go). 0 runs all alike.
	ServerNice int
	// ProfileDir, when set, gets CPU profiles of the exchange, the root and
	// each child (from their admin ports' /debug/pprof/profile) over each
	// tickrelay step's publishing: ProfileDir/<rate>-<process>.pprof.
	ProfileDir string
	// Command is the command line that ran the sweep, for the README.
	Command string
	// Progress gets a one-line progress bar (stderr); nil disables it.
	Progress io.Writer
	// ServerLog gets the server processes' stderr; nil discards it.
	ServerLog io.Writer
	Logger    *slog.Logger
}

// DefaultConfig is the full sweep of `make perf`.
func DefaultConfig() Config {
	return Config{
		Rates:         []int{10000, 50000, 100000, 200000, 0},
		Clients:       5000,
		SubsPerClient: 1,
		Children:      1,
		Symbols:       2000,
		Seed:          1,
		Duration:      5 * time.Second,
		Warmup:        time.Second,
		SweepWarmUp:   2 * time.Second,
		Repeats:       3,
		MaxTries:      3,
		ServerNice:    -10,
		RootArgs:      []string{"-sync", "none"},
		SustainP99:    500 * time.Millisecond,
		Systems:       []string{SystemTickrelay, SystemNATS, SystemRedis},
		HarnessMode:   harness.ModeGoroutines,
		Out:           "perf-results",
		ExchangePort:  9000,
		RootPort:      9100,
		ChildPort:     9200,
	}
}

// Validate checks the config with field-named errors.
func (c Config) Validate() error {
	switch {
	case len(c.Rates) == 0:
		return errors.New("perf: Rates: need at least one")
	case c.Clients < 1:
		return fmt.Errorf("perf: Clients %d: need at least 1", c.Clients)
	case c.SubsPerClient < 1 || c.SubsPerClient > c.Symbols:
		return fmt.Errorf("perf: SubsPerClient %d: need 1..Symbols (%d)", c.SubsPerClient, c.Symbols)
	case c.Children < 1:
		return fmt.Errorf("perf: Children %d: need at least 1", c.Children)
	case c.Symbols < 1 || c.Symbols > 99999:
		return fmt.Errorf("perf: Symbols %d: need 1..99999", c.Symbols)
	case c.Repeats < 1:
		return fmt.Errorf("perf: Repeats %d: need at least 1", c.Repeats)
	case c.MaxTries < 0:
		return fmt.Errorf("perf: MaxTries %d: must not be negative", c.MaxTries)
	case c.SustainP99 <= 0:
		return fmt.Errorf("perf: SustainP99 %v: must be positive", c.SustainP99)
	case c.Duration <= 0:
		return fmt.Errorf("perf: Duration %v: must be positive", c.Duration)
	case c.SweepWarmUp < 0:
		return fmt.Errorf("perf: SweepWarmUp %v < 0", c.SweepWarmUp)
	case c.Warmup < 0 || c.Warmup >= c.Duration:
		return fmt.Errorf("perf: Warmup %v: need 0 <= Warmup < Duration (%v)", c.Warmup, c.Duration)
	case len(c.Systems) == 0:
		return errors.New("perf: Systems: need at least one")
	case c.HarnessMode != "" && c.HarnessMode != harness.ModeGoroutines && c.HarnessMode != harness.ModeEpoll:
		return fmt.Errorf("perf: HarnessMode %q: want goroutines or epoll", c.HarnessMode)
	}
	for _, r := range c.Rates {
		if r < 0 {
			return fmt.Errorf("perf: Rates: %d is negative (0 means max)", r)
		}
	}
	for _, s := range c.Systems {
		if s != SystemTickrelay && s != SystemNATS && s != SystemRedis {
			return fmt.Errorf("perf: Systems: unknown %q (want tickrelay, nats, redis)", s)
		}
	}
	return nil
}

// withDefaults fills in what a step needs and the caller left nil.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Spawn == nil {
		sp, err := SelfSpawner()
		if err != nil {
			return c, err
		}
		c.Spawn = sp
	}
	if c.NewSource == nil {
		c.NewSource = NewFeedSource
	}
	if c.ServerLog == nil {
		c.ServerLog = io.Discard
	}
	return c, nil
}

// ParseRates parses "10000,50000,max" (max or 0 = as fast as possible).
func ParseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "max" {
			out = append(out, 0)
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(f, "k"), "K"))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("rate %q: want a positive number, NNk or max", f)
		}
		if strings.HasSuffix(f, "k") || strings.HasSuffix(f, "K") {
			n *= 1000
		}
		out = append(out, n)
	}
	return out, nil
}

// Scenario is one step of a sweep: one system at one rate.
type Scenario struct {
	System        string        `json:"system"`
	Rate          int           `json:"rate"` // 0 = max
	Clients       int           `json:"clients"`
	SubsPerClient int           `json:"subs_per_client"`
	Children      int           `json:"children,omitempty"`
	Symbols       int           `json:"symbols"`
	Seed          int64         `json:"seed"`
	Duration      time.Duration `json:"duration_ns"`
	Warmup        time.Duration `json:"warmup_ns"`
	HarnessMode   harness.Mode  `json:"harness_mode"`
	// The slow-consumer step (slow.go): Stalled connections that send
	// "SUB *" and never read attach StallAt into the publishing; the
	// children run -slow-policy SlowPolicy ("": their default).
	Stalled    int           `json:"stalled,omitempty"`
	StallAt    time.Duration `json:"stall_at_ns,omitempty"`
	SlowPolicy string        `json:"slow_policy,omitempty"`
	// Writes is the children's -writes ("": their default; writes.go).
	Writes string `json:"writes,omitempty"`
}

// RateLabel is "50k/s" or "max".
func (s Scenario) RateLabel() string { return rateLabel(s.Rate) }

func rateLabel(r int) string {
	switch {
	case r == 0:
		return "max"
	case r%1000 == 0:
		return strconv.Itoa(r/1000) + "k/s"
	}
	return strconv.Itoa(r) + "/s"
}

// Subscriptions returns client i's symbol codes: SubsPerClient consecutive
// codes starting at i*SubsPerClient, wrapping over 1..Symbols, so every
// symbol gets Clients*SubsPerClient/Symbols subscribers (+-1).
func (s Scenario) Subscriptions(i int) []uint32 {
	out := make([]uint32, s.SubsPerClient)
	for j := range out {
		out[j] = uint32((i*s.SubsPerClient+j)%s.Symbols) + 1
	}
	return out
}

// Subscribers returns how many clients subscribe to each code (index = code).
func (s Scenario) Subscribers() []int64 {
	n := make([]int64, s.Symbols+1)
	for i := 0; i < s.Clients; i++ {
		for _, c := range s.Subscriptions(i) {
			n[c]++
		}
	}
	return n
}

// StepResult is what one scenario measured.
type StepResult struct {
	Scenario
	Err string `json:"error,omitempty"`
	// Published messages and the achieved publish rate over the step.
	Published    uint64  `json:"published"`
	AchievedRate float64 `json:"achieved_rate"`
	// Delivered frames to all clients; Expected is what full delivery would
	// be (0 when unknown); DeliveryRate is frames/s over the step.
	Delivered    int64         `json:"delivered"`
	Expected     int64         `json:"expected"`
	DeliveryRate float64       `json:"delivery_rate"`
	Harness      harness.Stats `json:"harness"`
	// WarmupFrames are the delivered frames left out of Latency (Warmup).
	WarmupFrames int64            `json:"warmup_frames"`
	Latency      latency.Snapshot `json:"latency"`
	// HDR is the lossless per-hop data (HDR V2 encodings) for re-analysis.
	HDR *latency.Hops `json:"hdr,omitempty"`
	// Server CPU time over publish+drain, per delivered frame and per published message.
	ServerCPU        time.Duration `json:"server_cpu_ns"`
	ChildCPU         time.Duration `json:"child_cpu_ns,omitempty"` // tickrelay's children's share of it
	CPUPerDeliveryNs float64       `json:"cpu_per_delivery_ns"`
	CPUPerMessageNs  float64       `json:"cpu_per_message_ns"`
	// Server RSS growth from before the clients connected to after they
	// subscribed, per client.
	RSSPerClient float64 `json:"rss_per_client_bytes"`
	// FramesPerWrite is tickrelay's frames per client write (its children's
	// frames_out_total / writes_total): how much the fan-out coalesces.
	FramesPerWrite float64 `json:"frames_per_write,omitempty"`
	// ChildPeakRSS is the children's peak resident memory (VmHWM, summed);
	// SlowCut and SlowConflated their slow-client counters at the end.
	ChildPeakRSS  int64         `json:"child_peak_rss_bytes,omitempty"`
	SlowCut       float64       `json:"slow_cut,omitempty"`
	SlowConflated float64       `json:"slow_conflated,omitempty"`
	ImageBytes    int64         `json:"image_bytes,omitempty"` // the answer to SUB * (slow step)
	ServerRSS     int64         `json:"server_rss_bytes"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	// Probe marks a step of the max search; Max marks the copy of a
	// system's highest sustained step (its "max" column). Round numbers the
	// repeats of a fixed rate; Spare marks those that are not the median.
	Probe bool `json:"probe,omitempty"`
	Max   bool `json:"max,omitempty"`
	Round int  `json:"round,omitempty"`
	Spare bool `json:"spare,omitempty"`
	// WarmUp marks the sweep's warm-up step (Config.SweepWarmUp), never
	// shown: without it the sweep's first step ran slower than any later
	// one (tickrelay's 10k p99 17 ms against 3-7 ms), and it always fell
	// to the same system.
	WarmUp bool `json:"warm_up,omitempty"`
}

// medianByP99 returns the one of idx (indexes into steps) whose step has
// the median end-to-end p99: a failed step counts as the worst; of an even
// count, the lower middle.
func medianByP99(steps []StepResult, idx []int) int {
	p99 := func(i int) int64 {
		if steps[i].Err != "" {
			return math.MaxInt64
		}
		return steps[i].Latency.Hops[latency.HopEndToEnd].P99
	}
	sorted := slices.Clone(idx)
	slices.SortStableFunc(sorted, func(a, b int) int { return cmp.Compare(p99(a), p99(b)) })
	return sorted[(len(sorted)-1)/2]
}

// markMedian marks every step of idx but the median (medianByP99) as a
// spare.
func markMedian(steps []StepResult, idx []int) {
	median := medianByP99(steps, idx)
	for _, i := range idx {
		steps[i].Spare = i != median
	}
}

// column is the rate column a step is shown under: 0 ("max") for a
// system's max, its rate for a fixed step; ok is false for probes.
func (st StepResult) column() (rate int, ok bool) {
	switch {
	case st.Max:
		return 0, true
	case st.Probe, st.Spare, st.WarmUp:
		return 0, false
	}
	return st.Rate, true
}

// Sustained reports whether a step kept up with its rate: it published at
// least 95% of it, delivered every frame a complete fan-out makes, with an
// end-to-end p99 of at most limit.
func (st StepResult) Sustained(limit time.Duration) bool {
	return st.Err == "" && st.Rate > 0 && st.Expected > 0 && st.Delivered >= st.Expected &&
		st.AchievedRate >= 0.95*float64(st.Rate) && st.Latency.Hops[latency.HopEndToEnd].P99 <= int64(limit)
}

// searchMax finds system's highest sustained rate. From its fixed steps
// (lo: the best sustained rate, hi: the lowest failing rate above it) it
// tries 1.5 x lo while nothing failed, else the midpoint, at most tries
// rates (try decides one, Run with probeRate), stopping once lo and hi are
// within 10%. It returns the best sustained step, or one carrying an error
// when none sustained.
func searchMax(steps []StepResult, system string, tries int, limit time.Duration, try func(rate int) StepResult) StepResult {
	var best StepResult
	lo, hi := 0, 0
	fixed := func(st StepResult) bool { _, ok := st.column(); return ok && st.System == system && !st.Max }
	for _, st := range steps {
		if fixed(st) && st.Sustained(limit) && st.Rate > lo {
			lo, best = st.Rate, st
		}
	}
	for _, st := range steps {
		if fixed(st) && st.Rate > lo && (hi == 0 || st.Rate < hi) {
			hi = st.Rate
		}
	}
	for range tries {
		rate := 10_000
		switch {
		case hi > 0 && hi-lo <= hi/10:
			return maxResult(best, system, lo, hi)
		case hi > 0:
			rate = (lo + hi) / 2
		case lo > 0:
			rate = lo * 3 / 2
		}
		rate = max(1000, rate/1000*1000)
		if rate <= lo || (hi > 0 && rate >= hi) {
			break
		}
		if st := try(rate); st.Sustained(limit) {
			lo, best = rate, st
		} else {
			hi = rate
		}
	}
	return maxResult(best, system, lo, hi)
}

// probeRate decides whether a rate is sustained by majority: run (one step
// each time) until n/2+1 runs agree, so one lucky or unlucky run on a noisy
// box does not set a system's max. It returns the winning side's median run
// by end-to-end p99.
func probeRate(n int, limit time.Duration, run func() StepResult) StepResult {
	n = max(n, 1)
	var pass, fail []StepResult
	for len(pass) <= n/2 && len(fail) <= n/2 {
		if st := run(); st.Sustained(limit) {
			pass = append(pass, st)
		} else {
			fail = append(fail, st)
		}
	}
	side := pass
	if len(fail) > len(pass) {
		side = fail
	}
	idx := make([]int, len(side))
	for i := range idx {
		idx[i] = i
	}
	return side[medianByP99(side, idx)]
}

func maxResult(best StepResult, system string, lo, hi int) StepResult {
	if lo == 0 {
		best.System = system
		best.Err = fmt.Sprintf("no rate sustained (lowest failing: %d msgs/s)", hi)
	}
	best.Probe, best.Spare, best.Round = false, false, 0
	return best
}

// Results is a whole sweep (results.json).
type Results struct {
	Started   time.Time     `json:"started"`
	Command   string        `json:"command,omitempty"`
	Setup     string        `json:"setup,omitempty"`
	GoVersion string        `json:"go_version"`
	NumCPU    int           `json:"num_cpu"`
	Notes     []string      `json:"notes,omitempty"`
	Steps     []StepResult  `json:"steps"`
	TotalTime time.Duration `json:"total_ns"`
}

// Run performs the sweep: for each rate, each system in turn, in fresh
// server processes. A failing step is recorded with its error and the sweep
// goes on; Run fails only on bad config or when ctx ends.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &Results{Started: time.Now().UTC(), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(),
		Command: cfg.Command,
		Setup: fmt.Sprintf("%d clients x %d symbol(s) of %d, %d tickrelay child(ren), %v per step (first %v warm-up, not in the histograms%s), median of %d runs by e2e p99, seed %d, harness %s, servers and feed sources at nice %d, root flags %q",
			cfg.Clients, cfg.SubsPerClient, cfg.Symbols, cfg.Children, cfg.Duration, cfg.Warmup, sweepWarmUp(cfg.SweepWarmUp), cfg.Repeats, cfg.Seed, cfg.HarnessMode,
			cfg.ServerNice, strings.Join(cfg.RootArgs, " "))}
	if slices.Contains(cfg.Rates, 0) {
		res.Setup += fmt.Sprintf("; max = highest rate sustained (published on time, all delivered, e2e p99 <= %v, in most of up to %d runs) within %d extra rates",
			cfg.SustainP99, cfg.Repeats, cfg.MaxTries)
	}
	if cfg.ServerNice < 0 {
		if out, err := exec.CommandContext(ctx, "nice", "-n", strconv.Itoa(cfg.ServerNice), "true").CombinedOutput(); err != nil || len(out) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("servers could not take priority over the load clients (nice %d: %s%v): all ran alike",
				cfg.ServerNice, strings.TrimSpace(string(out)), err))
		}
	}
	var systems []string
	if cfg.SpawnNATS == nil && slices.Contains(cfg.Systems, SystemNATS) {
		if sp, err := NATSPeerSpawner(); err != nil {
			res.Notes = append(res.Notes, "nats skipped: "+err.Error())
		} else {
			cfg.SpawnNATS = sp
		}
	}
	for _, s := range cfg.Systems {
		if s == SystemNATS && cfg.SpawnNATS == nil {
			continue
		}
		if s == SystemRedis {
			if _, ok := redisAvailable(); !ok {
				res.Notes = append(res.Notes, "redis skipped: redis-server not on PATH")
				continue
			}
		}
		systems = append(systems, s)
	}
	scenario := func(system string, rate int) Scenario {
		return Scenario{System: system, Rate: rate, Clients: cfg.Clients,
			SubsPerClient: cfg.SubsPerClient, Children: cfg.Children, Symbols: cfg.Symbols,
			Seed: cfg.Seed, Duration: cfg.Duration, Warmup: cfg.Warmup, HarnessMode: cfg.HarnessMode}
	}
	var fixed []int
	wantMax := false
	for _, r := range cfg.Rates {
		if r == 0 {
			wantMax = true
		} else {
			fixed = append(fixed, r)
		}
	}
	n := len(fixed) * len(systems) * cfg.Repeats
	if cfg.SweepWarmUp > 0 {
		n++
	}
	if wantMax {
		n += len(systems) * cfg.MaxTries * cfg.Repeats // at most: a probe stops once its majority is settled
	}
	bar := newProgress(cfg.Progress, n)
	defer bar.done()
	step := func(sc Scenario) StepResult {
		bar.step(len(res.Steps), sc)
		start := time.Now()
		var r StepResult
		var err error
		switch sc.System {
		case SystemTickrelay:
			r, err = runTickrelay(ctx, cfg, sc, bar)
		default:
			r, err = runPeer(ctx, cfg, sc, bar)
		}
		r.Scenario, r.Elapsed = sc, time.Since(start)
		if err != nil {
			r.Err = err.Error()
			cfg.Logger.Warn("perf step failed", "system", sc.System, "rate", sc.RateLabel(), "err", err)
		}
		return r
	}
	if cfg.SweepWarmUp > 0 && len(systems) > 0 && len(cfg.Rates) > 0 {
		sc := scenario(systems[0], cfg.Rates[0])
		if sc.Rate == 0 {
			sc.Rate = 10_000
		}
		sc.Duration, sc.Warmup = cfg.SweepWarmUp, 0
		st := step(sc)
		st.WarmUp = true
		res.Steps = append(res.Steps, st)
	}
	// Each rate: Repeats rounds over the systems (interleaved, so drifting
	// machine noise hits all alike), then each system's median step by
	// end-to-end p99 stands for it; the others are kept as spares.
	for _, r := range fixed {
		runs := map[string][]int{}
		for rep := 1; rep <= cfg.Repeats; rep++ {
			for _, sys := range systems {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				st := step(scenario(sys, r))
				st.Round = rep
				runs[sys] = append(runs[sys], len(res.Steps))
				res.Steps = append(res.Steps, st)
			}
		}
		for _, idx := range runs {
			markMedian(res.Steps, idx)
		}
	}
	if wantMax {
		for _, sys := range systems {
			best := searchMax(res.Steps, sys, cfg.MaxTries, cfg.SustainP99, func(rate int) StepResult {
				return probeRate(cfg.Repeats, cfg.SustainP99, func() StepResult {
					r := step(scenario(sys, rate))
					r.Probe = true
					res.Steps = append(res.Steps, r)
					return r
				})
			})
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			best.Max = true
			res.Steps = append(res.Steps, best)
		}
	}
	res.TotalTime = time.Since(res.Started)

	if err := writeOutputs(cfg, res); err != nil {
		return res, err
	}
	return res, nil
}

// writeOutputs writes results.json, latency.png and the README table.
func writeOutputs(cfg Config, res *Results) error {
	if cfg.Out != "" {
		if err := writeJSON(cfg.Out, "results.json", res); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(cfg.Out, "latency.png"))
		if err != nil {
			return err
		}
		if err := WritePlot(f, res); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if cfg.UpdateReadme != "" {
		return UpdateReadme(cfg.UpdateReadme, RatioTable(res))
	}
	return nil
}

// saveStep writes a step's results as cfg.Out/name and its table into
// cfg.UpdateReadme between begin and end (either skipped when unset).
func saveStep(cfg Config, name string, v any, begin, end, table string) error {
	if cfg.Out != "" {
		if err := writeJSON(cfg.Out, name, v); err != nil {
			return err
		}
	}
	if cfg.UpdateReadme != "" {
		return updateReadmeBetween(cfg.UpdateReadme, begin, end, table)
	}
	return nil
}

// runRound runs one tickrelay scenario of a step's round rep.
func runRound(ctx context.Context, cfg Config, sc Scenario, rep int, bar *progress, i int) StepResult {
	bar.step(i, sc)
	start := time.Now()
	st, err := runTickrelay(ctx, cfg, sc, bar)
	st.Scenario, st.Elapsed, st.Round = sc, time.Since(start), rep
	if err != nil {
		st.Err = err.Error()
	}
	return st
}

// writeJSON writes v, indented, to dir/name (making dir).
func writeJSON(dir, name string, v any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644)
}

// runPeer measures NATS or Redis: a server process, the publisher (this
// process), the harness (this process).
func runPeer(ctx context.Context, cfg Config, sc Scenario, bar *progress) (StepResult, error) {
	var r StepResult
	var srv *proc
	var err error
	switch sc.System {
	case SystemNATS:
		srv, err = startProc(ctx, "nats", niced(cfg.SpawnNATS(ctx, "-addr", "127.0.0.1:0"), cfg.ServerNice), true, "", cfg.ServerLog)
	case SystemRedis:
		srv, err = startRedis(ctx, cfg)
	}
	if err != nil {
		return r, err
	}
	defer srv.stop()
	proto := harness.NATS
	if sc.System == SystemRedis {
		proto = harness.Redis
	}
	subjects := func(i int) []string {
		codes := sc.Subscriptions(i)
		out := make([]string, len(codes))
		for k, c := range codes {
			out[k] = Subject(c)
		}
		return out
	}
	pub, err := NewPublisher(PublisherConfig{Protocol: sc.System, Addr: srv.addr, Rate: sc.Rate, Nice: cfg.ServerNice,
		Source: cfg.NewSource(sc.Symbols, sc.Seed)})
	if err != nil {
		return r, err
	}
	return measure(ctx, sc, []*proc{srv}, proto, []string{srv.addr}, subjects, bar,
		func(ctx context.Context) (pubResult, error) {
			err := pub.Run(ctx)
			subs := sc.Subscribers()
			var expected int64
			for code, n := range pub.Counts() {
				if int(code) < len(subs) {
					expected += int64(n) * subs[code]
				}
			}
			return pubResult{Published: pub.Published(), Expected: expected}, err
		})
}

// pubResult is what a step's publishing reports: messages published, the
// deliveries a complete fan-out makes (0 if unknown), and when publishing
// really began (zero: when publish was called).
type pubResult struct {
	Published uint64
	Expected  int64
	Start     time.Time
}

// measure runs one step against started servers: RSS before clients, the
// harness, RSS after subscribing, CPU over publish and drain. The publish
// rate is over [start, publish returned]; the delivery rate over [start,
// last frame] (the end of the drain, less the quiet wait when incomplete).
func measure(ctx context.Context, sc Scenario, servers []*proc, proto harness.Protocol, addrs []string,
	subs func(i int) []string, bar *progress, publish func(context.Context) (pubResult, error)) (StepResult, error) {
	var r StepResult
	pids := make([]int, len(servers))
	for i, s := range servers {
		pids[i] = s.pid()
	}
	rss0 := sumProcs(pids).RSS
	rec := latency.NewRecorder(16)
	rec.SetWarmup(sc.Warmup)
	hcfg := harness.DefaultConfig()
	hcfg.Protocol, hcfg.Addrs, hcfg.Clients, hcfg.Subscriptions, hcfg.Recorder = proto, addrs, sc.Clients, subs, rec
	if sc.HarnessMode != "" {
		hcfg.Mode = sc.HarnessMode
	}
	h, err := harness.New(hcfg)
	if err != nil {
		return r, err
	}
	defer h.Close()
	if err := h.Start(ctx); err != nil {
		return r, err
	}
	var children []int // tickrelay's children: their CPU alone too
	for _, s := range servers {
		if s.name == "child" {
			children = append(children, s.pid())
		}
	}
	c0 := sumProcs(children)
	u0 := sumProcs(pids)
	r.ServerRSS = u0.RSS
	r.RSSPerClient = float64(u0.RSS-rss0) / float64(sc.Clients)

	pctx, cancel := context.WithTimeout(ctx, sc.Duration)
	defer cancel()
	stopBar := bar.live(sc, func() (uint64, int64) { return 0, h.Stats().Frames })
	t0 := time.Now()
	pr, perr := publish(pctx)
	if pr.Start.IsZero() {
		pr.Start = t0
	}
	pubTime := time.Since(pr.Start)
	const quiet = 2 * time.Second // a stall this long ends the drain (incomplete)
	// The drain is bounded too: a system far behind does not hold the sweep.
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second+2*sc.Duration)
	st := h.WaitQuiet(dctx, pr.Expected, quiet)
	dcancel()
	deliverTime := time.Since(pr.Start)
	if pr.Expected == 0 || st.Frames < pr.Expected {
		deliverTime -= quiet
	}
	stopBar()
	u1 := sumProcs(pids)
	r.ChildCPU = sumProcs(children).CPU - c0.CPU

	published, expected := pr.Published, pr.Expected
	r.Published, r.Expected, r.Delivered, r.Harness = published, expected, st.Frames, st
	r.AchievedRate = float64(published) / pubTime.Seconds()
	r.DeliveryRate = float64(st.Frames) / max(deliverTime, pubTime).Seconds()
	r.ServerCPU = u1.CPU - u0.CPU
	if st.Frames > 0 {
		r.CPUPerDeliveryNs = float64(r.ServerCPU) / float64(st.Frames)
	}
	if published > 0 {
		r.CPUPerMessageNs = float64(r.ServerCPU) / float64(published)
	}
	r.HDR = rec.Merged()
	r.WarmupFrames = rec.Skipped()
	r.Latency = r.HDR.Snapshot()
	if perr != nil && !errors.Is(perr, context.DeadlineExceeded) {
		return r, perr
	}
	return r, nil
}

// startRedis runs redis-server on a free loopback port, no persistence.
func startRedis(ctx context.Context, cfg Config) (*proc, error) {
	path, ok := redisAvailable()
	if !ok {
		return nil, errors.New("perf: redis-server not on PATH")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := execCommand(ctx, path, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	return startProc(ctx, "redis", niced(cmd, cfg.ServerNice), false, loopback(port), cfg.ServerLog)
}

// runTickrelay measures tickrelay: the root, sc.Children children and the
// exchange simulator as processes of this binary, the harness (this
// process) subscribed over the children:
//
//	tickrelay root     -exchange EX -addr ROOT -journal TMP/root.journal -admin A
//	tickrelay child    -root ROOT -addr 127.0.0.1:92NN -name cNN -admin A
//	tickrelay exchange -addr EX -rate R -max-seq M -start-on-logon -burst 1 -admin A
//
// The exchange starts last, once every client has subscribed; it holds its
// generator until the root (retrying meanwhile) logs on, then publishes
// exactly M = R * Duration messages. The expected deliveries come from
// replaying the same deterministic stream here (feed.Generator with the
// same seed, symbols and total). Publishing ends when the root's ring head
// reaches M (the root has taken every message: what the peers' publisher
// confirms with PING or replies).
func runTickrelay(ctx context.Context, cfg Config, sc Scenario, bar *progress) (StepResult, error) {
	dir, err := os.MkdirTemp("", "tickrelay-perf-")
	if err != nil {
		return StepResult{}, err
	}
	defer os.RemoveAll(dir)
	exAddr, rootAddr := loopback(cfg.ExchangePort), loopback(cfg.RootPort)
	procs := &procGroup{ctx: ctx, cfg: cfg}
	defer procs.stop()
	rootAdmin, err := freeAddr()
	if err != nil {
		return StepResult{}, err
	}
	if _, err := procs.start("root", rootAddr, rootArgs(cfg, exAddr, rootAddr, dir, rootAdmin)...); err != nil {
		return StepResult{}, err
	}
	admins := map[string]string{"root": rootAdmin} // processes profiled (ProfileDir)
	var childAddrs, childAdmins []string
	var children []*proc
	for i := 0; i < sc.Children; i++ {
		a := loopback(cfg.ChildPort + i)
		ca, err := freeAddr()
		if err != nil {
			return StepResult{}, err
		}
		admins[fmt.Sprintf("c%02d", i)] = ca
		childAdmins = append(childAdmins, ca)
		args := append([]string{"child", "-root", rootAddr, "-addr", a, "-name", fmt.Sprintf("c%02d", i),
			"-admin", ca}, cfg.ChildArgs...)
		if sc.SlowPolicy != "" {
			args = append(args, "-slow-policy", sc.SlowPolicy)
		}
		if sc.Writes != "" {
			args = append(args, "-writes", sc.Writes)
		}
		p, err := procs.start("child", a, args...)
		if err != nil {
			return StepResult{}, err
		}
		children = append(children, p)
		childAddrs = append(childAddrs, a)
	}
	servers := append([]*proc(nil), procs.list...) // root and children: CPU and RSS

	total := uint64(sc.Rate) * uint64(sc.Duration/time.Millisecond) / 1000
	if total == 0 {
		return StepResult{}, fmt.Errorf("perf: rate %d for %v publishes nothing", sc.Rate, sc.Duration)
	}
	// Expected deliveries: the same stream, counted per symbol.
	subs := sc.Subscribers()
	var expected int64
	g := feed.NewGenerator(feed.GenConfig{Seed: sc.Seed, Symbols: sc.Symbols, Total: total})
	var m wire.Msg
	for range total {
		g.Next(&m)
		if int(m.Security) < len(subs) {
			expected += subs[m.Security]
		}
	}

	symbols := func(i int) []string {
		codes := sc.Subscriptions(i)
		out := make([]string, len(codes))
		for k, c := range codes {
			out[k] = string(wire.AppendSymbol(nil, c))
		}
		return out
	}
	exAdmin, err := freeAddr()
	if err != nil {
		return StepResult{}, err
	}
	admins["exchange"] = exAdmin
	stall := newStaller(ctx, sc, childAddrs)
	defer stall.close()
	r, err := measure(ctx, sc, servers, harness.Tickrelay, childAddrs, symbols, bar,
		func(_ context.Context) (pubResult, error) {
			res := pubResult{Expected: expected}
			if _, err := procs.start("exchange", exAddr, exchangeArgs(sc, exAddr, exAdmin, total)...); err != nil {
				return res, err
			}
			// The root retries the exchange with backoff (up to its
			// MaxBackoff): allow for that, then the publishing itself.
			deadline := time.Now().Add(15*time.Second + 3*sc.Duration)
			// The root is not polled while publishing: a scrape of its
			// /metrics costs it ~2 ms of CPU (process collector,
			// histograms), a burst at the servers' priority that delays
			// the load clients (the peers' publisher is never polled).
			// The exchange keeps to its rate, so the end is due at
			// Start + Duration; the deadline catches a root that stalls.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			var profiles sync.WaitGroup
			defer profiles.Wait()
			for {
				if res.Start.IsZero() {
					if v, ok := Scrape(exAdmin, "tickrelay_exchange_published_seq"); ok && v > 0 {
						res.Start = time.Now()
						stall.start(res.Start)
						if cfg.ProfileDir != "" {
							secs := max(1, int(sc.Duration/time.Second)-1)
							for name, a := range admins {
								profiles.Add(1)
								go func() {
									defer profiles.Done()
									out := filepath.Join(cfg.ProfileDir, sc.RateLabel()+"-"+name+".pprof")
									if err := fetchProfile(a, secs, strings.ReplaceAll(out, "/s-", "-")); err != nil {
										cfg.Logger.Warn("perf: cpu profile", "process", name, "err", err)
									}
								}()
							}
						}
					}
				}
				if res.Start.IsZero() || !time.Now().Before(res.Start.Add(sc.Duration)) {
					if head, ok := Scrape(rootAdmin, "tickrelay_root_ring_head"); ok && uint64(head) >= total {
						res.Published = total
						if res.Start.IsZero() {
							res.Start = time.Now()
						}
						return res, nil
					}
				}
				if time.Now().After(deadline) {
					v, _ := Scrape(exAdmin, "tickrelay_exchange_published_seq")
					head, _ := Scrape(rootAdmin, "tickrelay_root_ring_head")
					res.Published = uint64(v)
					return res, fmt.Errorf("perf: exchange published %.0f of %d, root head %.0f, within %v",
						v, total, head, 15*time.Second+3*sc.Duration)
				}
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-tick.C:
				}
			}
		})
	var frames, writes float64
	for _, a := range childAdmins {
		m := ScrapeAll(a, "tickrelay_child_frames_out_total", "tickrelay_child_writes_total")
		frames, writes = frames+m["tickrelay_child_frames_out_total"], writes+m["tickrelay_child_writes_total"]
	}
	if writes > 0 {
		r.FramesPerWrite = frames / writes
	}
	for _, a := range childAdmins {
		m := ScrapeAll(a, "tickrelay_child_slow_disconnects_total", "tickrelay_child_slow_conflated_total")
		r.SlowCut += m["tickrelay_child_slow_disconnects_total"]
		r.SlowConflated += m["tickrelay_child_slow_conflated_total"]
	}
	for _, p := range children {
		r.ChildPeakRSS += peakRSS(p.pid())
	}
	img, serr := stall.wait()
	r.ImageBytes = img
	if serr != nil && err == nil {
		err = fmt.Errorf("perf: stalled clients: %w", serr)
	}
	return r, err
}

func sweepWarmUp(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return fmt.Sprintf("; before the sweep one unshown %v step", d)
}

// procGroup is a step's server processes: started at the servers' nice,
// stopped in reverse order (the exchange first, the root last).
type procGroup struct {
	ctx  context.Context
	cfg  Config
	list []*proc
}

func (g *procGroup) start(name, listen string, args ...string) (*proc, error) {
	p, err := startProc(g.ctx, name, niced(g.cfg.Spawn(g.ctx, args...), g.cfg.ServerNice), false, listen, g.cfg.ServerLog)
	if err != nil {
		return nil, err
	}
	g.list = append(g.list, p)
	return p, nil
}

func (g *procGroup) stop() {
	for i := len(g.list) - 1; i >= 0; i-- {
		g.list[i].stop()
	}
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// freeAddr is a loopback address free right now (an admin port).
func freeAddr() (string, error) {
	p, err := freePort()
	return loopback(p), err
}

// rootArgs runs a root for a step: its journal in dir.
func rootArgs(cfg Config, exAddr, rootAddr, dir, admin string) []string {
	return append([]string{"root", "-exchange", exAddr, "-addr", rootAddr,
		"-journal", filepath.Join(dir, "root.journal"), "-admin", admin}, cfg.RootArgs...)
}

// exchangeArgs runs the exchange simulator for a step: total items at
// sc.Rate from the root's logon.
func exchangeArgs(sc Scenario, addr, admin string, total uint64) []string {
	return []string{"exchange", "-addr", addr, "-rate", strconv.Itoa(sc.Rate),
		"-symbols", strconv.Itoa(sc.Symbols), "-seed", strconv.FormatInt(sc.Seed, 10),
		"-max-seq", strconv.FormatUint(total, 10), "-start-on-logon", "-burst", "1",
		"-admin", admin}
}

// fetchProfile saves a CPU profile of secs seconds from http://addr/debug/pprof/profile.
func fetchProfile(addr string, secs int, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	c := http.Client{Timeout: time.Duration(secs+10) * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", addr, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Scrape reads one sample from the Prometheus text endpoint of a daemon's
// admin address: the first line whose series is name (labels, if any, are
// not matched). ok is false when it is absent or the endpoint is down.
func Scrape(addr, name string) (v float64, ok bool) {
	v, ok = ScrapeAll(addr, name)[name]
	return v, ok
}

// ScrapeAll is Scrape for several names in one request: the map holds the
// first sample of each name present (none when the endpoint is down).
func ScrapeAll(addr string, names ...string) map[string]float64 {
	out := make(map[string]float64, len(names))
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return out
	}
	req.Header.Set("Accept-Encoding", "identity") // no gzip work for the daemon
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && len(out) < len(names) {
		line := sc.Text()
		for _, name := range names {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if _, seen := out[name]; seen {
				continue
			}
			if f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				out[name] = f
			}
		}
	}
	return out
}

// execCommand is exec.CommandContext (a var for the tests' sake).
var execCommand = defaultExec

// progress is the one-line stderr progress bar.
type progress struct {
	w     io.Writer
	n     int
	i     int
	start time.Time
	mu    sync.Mutex
}

func newProgress(w io.Writer, n int) *progress {
	return &progress{w: w, n: n, start: time.Now()}
}

func (p *progress) step(i int, sc Scenario) {
	p.mu.Lock()
	p.i = i
	p.mu.Unlock()
	p.print(sc, 0, 0, 0)
}

// live redraws the bar every 250 ms while a step publishes; the returned
// func stops it.
func (p *progress) live(sc Scenario, counts func() (uint64, int64)) func() {
	if p.w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	t0 := time.Now()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var last int64
		lastT := t0
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				_, f := counts()
				rate := float64(f-last) / now.Sub(lastT).Seconds()
				last, lastT = f, now
				p.print(sc, now.Sub(t0), f, rate)
			}
		}
	}()
	return func() { close(stop); wg.Wait() }
}

func (p *progress) print(sc Scenario, el time.Duration, frames int64, rate float64) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	const width = 20
	frac := min(float64(el)/float64(sc.Duration), 1)
	fill := int(frac * width)
	fmt.Fprintf(p.w, "\r[%s%s] step %d/%d %-9s %-6s %5.1fs/%.0fs  %9d frames %9.0f/s  total %s   ",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), p.i+1, p.n, sc.System, sc.RateLabel(),
		el.Seconds(), sc.Duration.Seconds(), frames, rate, time.Since(p.start).Round(time.Second))
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintln(p.w)
	}
}

func defaultExec(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}
