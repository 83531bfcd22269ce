package perf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// Systems to measure, in order: "tickrelay", "nats", "redis". Redis is
	// skipped (with a note) when redis-server is not on PATH.
	Systems []string
	// Out is the results directory (results.json, latency.png); "" writes nothing.
	Out string
	// UpdateReadme is a README whose perf markers get the ratio table; "" skips.
	UpdateReadme string
	// HarnessMode is how the load clients read (goroutines or epoll).
	HarnessMode harness.Mode
	// Spawn starts server processes; nil means SelfSpawner.
	Spawn Spawner
	// NewSource makes the feed for a step; nil means NewFeedSource.
	// The tickrelay side uses the exchange simulator's own stream.
	NewSource func(symbols int, seed int64) Source
	// Ports of the tickrelay daemons: exchange, root, first child (children
	// take consecutive ports).
	ExchangePort, RootPort, ChildPort int
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
		Children:      2,
		Symbols:       2000,
		Seed:          1,
		Duration:      10 * time.Second,
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
	case c.Duration <= 0:
		return fmt.Errorf("perf: Duration %v: must be positive", c.Duration)
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
	HarnessMode   harness.Mode  `json:"harness_mode"`
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
	Latency      Snapshot      `json:"latency"`
	// HDR is the lossless per-hop data (HDR V2 encodings) for re-analysis.
	HDR *Hops `json:"hdr,omitempty"`
	// Server CPU time over publish+drain, per delivered frame and per published message.
	ServerCPU        time.Duration `json:"server_cpu_ns"`
	CPUPerDeliveryNs float64       `json:"cpu_per_delivery_ns"`
	CPUPerMessageNs  float64       `json:"cpu_per_message_ns"`
	// Server RSS growth from before the clients connected to after they
	// subscribed, per client.
	RSSPerClient float64       `json:"rss_per_client_bytes"`
	ServerRSS    int64         `json:"server_rss_bytes"`
	Elapsed      time.Duration `json:"elapsed_ns"`
}

// Results is a whole sweep (results.json).
type Results struct {
	Started   time.Time     `json:"started"`
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Spawn == nil {
		sp, err := SelfSpawner()
		if err != nil {
			return nil, err
		}
		cfg.Spawn = sp
	}
	if cfg.NewSource == nil {
		cfg.NewSource = NewFeedSource
	}
	if cfg.ServerLog == nil {
		cfg.ServerLog = io.Discard
	}
	res := &Results{Started: time.Now().UTC(), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU()}
	var systems []string
	for _, s := range cfg.Systems {
		if s == SystemRedis {
			if _, ok := redisAvailable(); !ok {
				res.Notes = append(res.Notes, "redis skipped: redis-server not on PATH")
				continue
			}
		}
		systems = append(systems, s)
	}
	var scenarios []Scenario
	for _, r := range cfg.Rates {
		for _, s := range systems {
			scenarios = append(scenarios, Scenario{System: s, Rate: r, Clients: cfg.Clients,
				SubsPerClient: cfg.SubsPerClient, Children: cfg.Children, Symbols: cfg.Symbols,
				Seed: cfg.Seed, Duration: cfg.Duration, HarnessMode: cfg.HarnessMode})
		}
	}
	bar := newProgress(cfg.Progress, len(scenarios))
	defer bar.done()
	for i, sc := range scenarios {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		bar.step(i, sc)
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
		res.Steps = append(res.Steps, r)
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
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return err
		}
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cfg.Out, "results.json"), append(data, '\n'), 0o644); err != nil {
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

// runPeer measures NATS or Redis: a server process, the publisher (this
// process), the harness (this process).
func runPeer(ctx context.Context, cfg Config, sc Scenario, bar *progress) (StepResult, error) {
	var r StepResult
	var srv *proc
	var err error
	switch sc.System {
	case SystemNATS:
		srv, err = startProc(ctx, "nats", cfg.Spawn(ctx, "perf", "peer-nats", "-addr", "127.0.0.1:0"), true, "", cfg.ServerLog)
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
	pub, err := NewPublisher(PublisherConfig{Protocol: sc.System, Addr: srv.addr, Rate: sc.Rate,
		Source: cfg.NewSource(sc.Symbols, sc.Seed)})
	if err != nil {
		return r, err
	}
	return measure(ctx, sc, []*proc{srv}, proto, []string{srv.addr}, subjects, bar,
		func(ctx context.Context) (uint64, int64, error) {
			err := pub.Run(ctx)
			subs := sc.Subscribers()
			var expected int64
			for code, n := range pub.Counts() {
				if int(code) < len(subs) {
					expected += int64(n) * subs[code]
				}
			}
			return pub.Published(), expected, err
		})
}

// measure runs one step against started servers: RSS before clients, the
// harness, RSS after subscribing, CPU over publish (publish returns the
// published count and the expected deliveries, 0 if unknown) and drain.
func measure(ctx context.Context, sc Scenario, servers []*proc, proto harness.Protocol, addrs []string,
	subs func(i int) []string, bar *progress, publish func(context.Context) (uint64, int64, error)) (StepResult, error) {
	var r StepResult
	pids := make([]int, len(servers))
	for i, s := range servers {
		pids[i] = s.pid()
	}
	rss0 := sumProcs(pids).RSS
	rec := NewRecorder(16)
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
	u0 := sumProcs(pids)
	r.ServerRSS = u0.RSS
	r.RSSPerClient = float64(u0.RSS-rss0) / float64(sc.Clients)

	pctx, cancel := context.WithTimeout(ctx, sc.Duration)
	defer cancel()
	stopBar := bar.live(sc, func() (uint64, int64) { return 0, h.Stats().Frames })
	t0 := time.Now()
	published, expected, perr := publish(pctx)
	pubTime := time.Since(t0)
	st := h.WaitQuiet(ctx, expected, 500*time.Millisecond)
	stopBar()
	u1 := sumProcs(pids)

	r.Published, r.Expected, r.Delivered, r.Harness = published, expected, st.Frames, st
	r.AchievedRate = float64(published) / pubTime.Seconds()
	r.DeliveryRate = float64(st.Frames) / pubTime.Seconds()
	r.ServerCPU = u1.CPU - u0.CPU
	if st.Frames > 0 {
		r.CPUPerDeliveryNs = float64(r.ServerCPU) / float64(st.Frames)
	}
	if published > 0 {
		r.CPUPerMessageNs = float64(r.ServerCPU) / float64(published)
	}
	r.HDR = rec.Merged()
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
	return startProc(ctx, "redis", cmd, false, "127.0.0.1:"+strconv.Itoa(port), cfg.ServerLog)
}

// ---------------------------------------------------------------------------
// TICKRELAY SIDE: to be finished by the lead once the daemons land.
//
// runTickrelay starts the exchange simulator, the root and sc.Children
// children as processes of this same binary, with the flags the daemons
// declare (README "Running the daemons"):
//
//	tickrelay exchange -addr 127.0.0.1:9000 -rate R -symbols S -seed N
//	tickrelay root     -exchange 127.0.0.1:9000 -addr 127.0.0.1:9100 -journal TMP/root.journal
//	tickrelay child    -root 127.0.0.1:9100 -addr 127.0.0.1:92NN -name cNN
//
// then the harness subscribes sc.Clients clients over the children and the
// step measures like the peers do. Open points (marked TODO below):
//   - rate 0 ("max"): the flag value the exchange takes for unthrottled;
//   - the exchange publishes from the moment the root logs in, so the
//     expected deliveries over the measured window are unknown (0) unless the
//     exchange can be told to start/stop (e.g. -max-seq with a start gate);
//   - the root's flags (journal in a temp dir per step, no Postgres).
//
// ---------------------------------------------------------------------------
func runTickrelay(ctx context.Context, cfg Config, sc Scenario, bar *progress) (StepResult, error) {
	dir, err := os.MkdirTemp("", "tickrelay-perf-")
	if err != nil {
		return StepResult{}, err
	}
	defer os.RemoveAll(dir)
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	exAddr, rootAddr := addr(cfg.ExchangePort), addr(cfg.RootPort)
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- { // children first, the exchange last
			procs[i].stop()
		}
	}()
	start := func(name string, listen string, args ...string) error {
		p, err := startProc(ctx, name, cfg.Spawn(ctx, args...), false, listen, cfg.ServerLog)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		return nil
	}
	// TODO(lead): confirm "-rate 0" means unthrottled in feed.Config.
	if err := start("exchange", exAddr, "exchange", "-addr", exAddr, "-rate", strconv.Itoa(sc.Rate),
		"-symbols", strconv.Itoa(sc.Symbols), "-seed", strconv.FormatInt(sc.Seed, 10)); err != nil {
		return StepResult{}, err
	}
	// TODO(lead): check the root's flags (README: -exchange -addr -journal; no Postgres here).
	if err := start("root", rootAddr, "root", "-exchange", exAddr, "-addr", rootAddr,
		"-journal", filepath.Join(dir, "root.journal")); err != nil {
		return StepResult{}, err
	}
	var childAddrs []string
	for i := 0; i < sc.Children; i++ {
		a := addr(cfg.ChildPort + i)
		if err := start("child", a, "child", "-root", rootAddr, "-addr", a, "-name", fmt.Sprintf("c%02d", i)); err != nil {
			return StepResult{}, err
		}
		childAddrs = append(childAddrs, a)
	}
	symbols := func(i int) []string {
		codes := sc.Subscriptions(i)
		out := make([]string, len(codes))
		for k, c := range codes {
			out[k] = string(wire.AppendSymbol(nil, c))
		}
		return out
	}
	// CPU and RSS: root and children (the exchange is the load source, like
	// the peers' publisher); RSS per client is dominated by the children.
	exchange := procs[0]
	r, err := measure(ctx, sc, procs[1:], harness.Tickrelay, childAddrs, symbols, bar,
		func(ctx context.Context) (uint64, int64, error) {
			// The exchange paces itself; the step lasts sc.Duration, then the
			// exchange stops and the relay drains.
			// TODO(lead): read the exchange's published count (admin /metrics
			// or a perf hook) to fill Published and Expected exactly.
			<-ctx.Done()
			exchange.stop()
			return 0, 0, nil
		})
	// Until then: every seq between the first and last seen was published
	// (with Clients*SubsPerClient >= Symbols every symbol has a subscriber).
	if r.Published == 0 && r.Harness.LastSeq > 0 {
		r.Published = uint64(r.Harness.LastSeq - r.Harness.FirstSeq + 1)
		r.AchievedRate = float64(r.Published) / sc.Duration.Seconds()
		r.CPUPerMessageNs = float64(r.ServerCPU) / float64(r.Published)
	}
	return r, err
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
