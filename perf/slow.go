package perf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"tickrelay/latency"
	"tickrelay/perf/harness"
)

// SlowConfig is the slow-consumer step of `tickrelay perf`: Readers clients
// of one symbol each read a child at Rate, once alone and once with
// Stalled clients that send "SUB *" and never read attached StallAt into
// the publishing, under each child slow policy. The readers must not
// notice: their e2e p99 and p99.9 within MaxRatio of the run without
// stalled clients, no stall in any reader's stream over MaxStall, and the
// child's memory within what the README promises.
type SlowConfig struct {
	Rate, Readers, Stalled int
	Policies               []string
	Duration, Warmup       time.Duration
	StallAt                time.Duration
	Repeats                int // per policy and load; the median by e2e p99 counts
	MaxRatio               float64
	MaxStall               time.Duration
}

// DefaultSlowConfig is the step of `make perf`.
func DefaultSlowConfig() SlowConfig {
	return SlowConfig{Rate: 20000, Readers: 1000, Stalled: 1000, Policies: []string{"disconnect", "conflate"},
		Duration: 8 * time.Second, Warmup: time.Second, StallAt: 2 * time.Second, Repeats: 3,
		MaxRatio: 1.5, MaxStall: 50 * time.Millisecond}
}

// Validate checks the config with field-named errors.
func (c SlowConfig) Validate() error {
	switch {
	case c.Rate < 1 || c.Readers < 1 || c.Stalled < 1:
		return fmt.Errorf("perf: slow step: Rate %d, Readers %d, Stalled %d: need at least 1 each", c.Rate, c.Readers, c.Stalled)
	case len(c.Policies) == 0:
		return errors.New("perf: slow step: Policies: need at least one")
	case c.Repeats < 1:
		return fmt.Errorf("perf: slow step: Repeats %d: need at least 1", c.Repeats)
	case c.Warmup < 0 || c.StallAt < c.Warmup || c.StallAt >= c.Duration:
		return fmt.Errorf("perf: slow step: need 0 <= Warmup (%v) <= StallAt (%v) < Duration (%v)", c.Warmup, c.StallAt, c.Duration)
	case c.MaxRatio <= 0 || c.MaxStall <= 0:
		return errors.New("perf: slow step: MaxRatio, MaxStall: must be positive")
	}
	return nil
}

// SlowResults is what RunSlow measured.
type SlowResults struct {
	Started   time.Time     `json:"started"`
	Command   string        `json:"command,omitempty"`
	GoVersion string        `json:"go_version"`
	NumCPU    int           `json:"num_cpu"`
	Config    SlowConfig    `json:"config"`
	Steps     []StepResult  `json:"steps"`
	Checks    []SlowCheck   `json:"checks"`
	TotalTime time.Duration `json:"total_ns"`
}

// SlowCheck compares one policy's median runs with and without the
// stalled clients.
type SlowCheck struct {
	Policy    string  `json:"policy"`
	P99Ratio  float64 `json:"p99_ratio"`
	P999Ratio float64 `json:"p999_ratio"`
	// MaxStall: the longest stall in any reader's stream, with the stalled
	// clients attached (BaseStall: without).
	MaxStall  time.Duration `json:"max_stall_ns"`
	BaseStall time.Duration `json:"base_stall_ns"`
	// RSSGrowth is the child's extra peak memory with the stalled clients;
	// RSSBound what the README promises for them: per client two write
	// chunks (512 KiB) and the image it asked for (ImageBytes).
	RSSGrowth  int64    `json:"rss_growth_bytes"`
	RSSBound   int64    `json:"rss_bound_bytes"`
	ImageBytes int64    `json:"image_bytes"`
	Handled    float64  `json:"handled"` // stalled clients cut or conflated
	Failures   []string `json:"failures,omitempty"`
}

// stallerChunk is what the RSS bound allows a stalled client beyond the
// image: two of the child's write chunks (child/session writeChunk).
const stallerChunk = 2 * 256 << 10

// RunSlow runs the slow-consumer step with cfg's ports, spawner, nice and
// flags (Rates, Clients and Systems are its own).
func RunSlow(ctx context.Context, cfg Config, sl SlowConfig) (*SlowResults, error) {
	if err := sl.Validate(); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &SlowResults{Started: time.Now().UTC(), Command: cfg.Command, GoVersion: runtime.Version(),
		NumCPU: runtime.NumCPU(), Config: sl}
	bar := newProgress(cfg.Progress, len(sl.Policies)*2*sl.Repeats)
	defer bar.done()
	for _, policy := range sl.Policies {
		runs := [2][]int{} // without, with the stalled clients
		for rep := 1; rep <= sl.Repeats; rep++ {
			for k, stalled := range []int{0, sl.Stalled} {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				sc := Scenario{System: SystemTickrelay, Rate: sl.Rate, Clients: sl.Readers, SubsPerClient: 1,
					Children: 1, Symbols: cfg.Symbols, Seed: cfg.Seed, Duration: sl.Duration, Warmup: sl.Warmup,
					HarnessMode: cfg.HarnessMode, Stalled: stalled, StallAt: sl.StallAt, SlowPolicy: policy}
				runs[k] = append(runs[k], len(res.Steps))
				res.Steps = append(res.Steps, runRound(ctx, cfg, sc, rep, bar, len(res.Steps)))
			}
		}
		markMedian(res.Steps, runs[0])
		markMedian(res.Steps, runs[1])
		base, with := res.Steps[medianByP99(res.Steps, runs[0])], res.Steps[medianByP99(res.Steps, runs[1])]
		res.Checks = append(res.Checks, checkSlow(sl, base, with))
	}
	res.TotalTime = time.Since(res.Started)
	return res, saveStep(cfg, "slow.json", res, SlowBegin, SlowEnd, SlowTable(res))
}

// checkSlow holds with (the stalled run) against base.
func checkSlow(sl SlowConfig, base, with StepResult) SlowCheck {
	b, w := base.Latency.Hops[latency.HopEndToEnd], with.Latency.Hops[latency.HopEndToEnd]
	c := SlowCheck{Policy: with.SlowPolicy, MaxStall: time.Duration(with.Harness.MaxStall),
		BaseStall: time.Duration(base.Harness.MaxStall), RSSGrowth: with.ChildPeakRSS - base.ChildPeakRSS,
		ImageBytes: with.ImageBytes, Handled: with.SlowCut + with.SlowConflated}
	if b.P99 > 0 {
		c.P99Ratio = float64(w.P99) / float64(b.P99)
	}
	if b.P999 > 0 {
		c.P999Ratio = float64(w.P999) / float64(b.P999)
	}
	c.RSSBound = int64(sl.Stalled) * (stallerChunk + with.ImageBytes)
	fail := func(format string, args ...any) { c.Failures = append(c.Failures, fmt.Sprintf(format, args...)) }
	for _, st := range []StepResult{base, with} {
		if st.Err != "" {
			fail("%s: %s", stepName(st), st.Err)
		} else if st.Delivered != st.Expected || st.Harness.Disconnects > 0 || st.Harness.ServerErrs > 0 {
			fail("%s: readers got %d of %d frames (%d disconnects, %d errors)", stepName(st),
				st.Delivered, st.Expected, st.Harness.Disconnects, st.Harness.ServerErrs)
		}
	}
	if c.P99Ratio == 0 || c.P99Ratio > sl.MaxRatio {
		fail("e2e p99 ratio %.2f (limit %.2f)", c.P99Ratio, sl.MaxRatio)
	}
	if c.P999Ratio == 0 || c.P999Ratio > sl.MaxRatio {
		fail("e2e p99.9 ratio %.2f (limit %.2f)", c.P999Ratio, sl.MaxRatio)
	}
	if c.MaxStall >= sl.MaxStall {
		fail("a reader's stream stood still %v (limit %v)", c.MaxStall, sl.MaxStall)
	}
	if c.RSSGrowth > c.RSSBound {
		fail("child peak RSS grew %d MiB, over the %d MiB bound", c.RSSGrowth>>20, c.RSSBound>>20)
	}
	if c.Handled < float64(sl.Stalled) {
		fail("only %.0f of %d stalled clients were cut or conflated", c.Handled, sl.Stalled)
	}
	return c
}

func stepName(st StepResult) string {
	if st.Stalled > 0 {
		return fmt.Sprintf("%s with %d stalled", st.SlowPolicy, st.Stalled)
	}
	return st.SlowPolicy + " alone"
}

// Pass reports whether every check held.
func (r *SlowResults) Pass() bool {
	for _, c := range r.Checks {
		if len(c.Failures) > 0 {
			return false
		}
	}
	return len(r.Checks) > 0
}

// README markers between which RunSlow writes SlowTable.
const (
	SlowBegin = "<!-- perf-slow:begin -->"
	SlowEnd   = "<!-- perf-slow:end -->"
)

// SlowTable renders the step as Markdown: per policy the ratios and
// checks, then the median runs' numbers.
func SlowTable(res *SlowResults) string {
	var b strings.Builder
	sl := res.Config
	fmt.Fprintf(&b, "Measured %s on %d CPUs (%s)", res.Started.Format("2006-01-02"), res.NumCPU, res.GoVersion)
	if res.Command != "" {
		fmt.Fprintf(&b, " by `%s`", res.Command)
	}
	fmt.Fprintf(&b, ": %d readers of one symbol each on one child at %s, alone and with %d clients that send `SUB *` and never read "+
		"(4 KiB receive window) attached %v into %v of publishing (the first %v left out of the histograms); median of %d runs by e2e p99.\n\n",
		sl.Readers, rateLabel(sl.Rate), sl.Stalled, sl.StallAt, sl.Duration, sl.Warmup, sl.Repeats)
	b.WriteString("| slow policy | p99 with/without | p99.9 with/without | longest reader stall (without) | stalled clients handled | child peak RSS growth (bound) | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, c := range res.Checks {
		verdict := "pass"
		if len(c.Failures) > 0 {
			verdict = "FAIL: " + oneLine(strings.Join(c.Failures, "; "))
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.1f ms (%.1f ms) | %.0f of %d | %d MiB (%d MiB) | %s |\n", c.Policy, c.P99Ratio, c.P999Ratio,
			float64(c.MaxStall)/1e6, float64(c.BaseStall)/1e6, c.Handled, sl.Stalled, c.RSSGrowth>>20, c.RSSBound>>20, verdict)
	}
	b.WriteString("\n| slow policy | stalled | e2e p50 µs | p99 µs | p99.9 µs | max µs | delivered/expected | child peak RSS MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, st := range res.Steps {
		if st.Spare {
			continue
		}
		if st.Err != "" {
			fmt.Fprintf(&b, "| %s | %d | error: %s | | | | | |\n", st.SlowPolicy, st.Stalled, oneLine(st.Err))
			continue
		}
		e := st.Latency.Hops[latency.HopEndToEnd]
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %d/%d | %d |\n", st.SlowPolicy, st.Stalled,
			latency.Micros(e.P50), latency.Micros(e.P99), latency.Micros(e.P999), latency.Micros(e.Max),
			st.Delivered, st.Expected, st.ChildPeakRSS>>20)
	}
	return b.String()
}

// staller attaches a step's stalled clients StallAt after publishing starts.
type staller struct {
	ctx   context.Context
	sc    Scenario
	addrs []string
	once  sync.Once
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns *harness.Stalled
	image int64
	err   error
}

func newStaller(ctx context.Context, sc Scenario, addrs []string) *staller {
	return &staller{ctx: ctx, sc: sc, addrs: addrs}
}

// start schedules the attach (once; nothing when the step has none).
func (s *staller) start(t0 time.Time) {
	if s.sc.Stalled == 0 {
		return
	}
	s.once.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-time.After(time.Until(t0.Add(s.sc.StallAt))):
			case <-s.ctx.Done():
				return
			}
			img, err := imageBytes(s.ctx, s.addrs[0])
			var conns *harness.Stalled
			if err == nil {
				conns, err = harness.Stall(s.ctx, s.addrs, s.sc.Stalled, "SUB *")
			}
			s.mu.Lock()
			s.conns, s.image, s.err = conns, img, err
			s.mu.Unlock()
		}()
	})
}

// wait waits for the attach and reports the image size and its error.
func (s *staller) wait() (image int64, err error) {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.image, s.err
}

// close closes the stalled clients.
func (s *staller) close() {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns != nil {
		s.conns.Close()
	}
}

// imageBytes is the size of the answer to "SUB *" (every image and its OK)
// from a child at addr, read by a client that reads.
func imageBytes(ctx context.Context, addr string) (int64, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("SUB *\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(c, 64<<10)
	var n int64
	for {
		line, err := r.ReadSlice('\n')
		n += int64(len(line))
		if err != nil {
			return n, err
		}
		if bytes.HasPrefix(line, []byte("OK SUB * ")) {
			return n, nil
		}
	}
}
