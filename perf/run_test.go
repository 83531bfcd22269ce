package perf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tickrelay/latency"
	"tickrelay/perf/harness"
	"tickrelay/perf/natspeer"
	"tickrelay/wire"
)

// The test binary doubles as the NATS peer of a sweep (tickrelay-natspeer):
// natsSpawner re-runs it with the args in this env var.
const execEnv = "TICKRELAY_PERF_TEST_EXEC"

func TestMain(m *testing.M) {
	if a := os.Getenv(execEnv); a != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := natspeer.Main(ctx, strings.Split(a, "\x1f"), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func natsSpawner(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), execEnv+"="+strings.Join(args, "\x1f"))
	return cmd
}

// TestSweepNATS runs a small sweep through the peer side end to end: a NATS
// server process (and redis-server when on PATH), the publisher and the
// harness; every published message reaches every subscriber and the
// histograms hold each delivery.
func TestSweepNATS(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("# x\n\n<!-- perf:begin -->\n(pending)\n<!-- perf:end -->\ntail\n"), 0o644)
	cfg := DefaultConfig()
	cfg.Rates = []int{2000, 0} // and one step searching for the max
	cfg.Repeats, cfg.MaxTries = 2, 1
	cfg.Clients, cfg.SubsPerClient, cfg.Symbols = 50, 4, 20
	cfg.Duration = 2 * time.Second
	cfg.Systems = []string{SystemNATS, SystemRedis}
	cfg.Out, cfg.UpdateReadme = filepath.Join(dir, "out"), readme
	cfg.SpawnNATS = natsSpawner
	var progress bytes.Buffer
	cfg.Progress = &progress

	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, haveRedis := redisAvailable()
	// First the warm-up (NATS at 2k/s, unshown); then per system: 2k/s
	// twice (one the median, one spare), a 3k/s probe (1.5x) run twice
	// (both runs must agree with Repeats 2), and the max (a copy of the
	// best).
	if want := 1 + 5*(1+map[bool]int{true: 1}[haveRedis]); len(res.Steps) != want {
		t.Fatalf("%d steps, want %d (redis on PATH: %v)", len(res.Steps), want, haveRedis)
	}
	if w := res.Steps[0]; !w.WarmUp || w.System != SystemNATS || w.Rate != 2000 || w.Duration != cfg.SweepWarmUp || w.Delivered == 0 {
		t.Fatalf("first step %+v: want the NATS 2k/s warm-up of %v, delivered", w.Scenario, cfg.SweepWarmUp)
	}
	if _, shown := res.Steps[0].column(); shown {
		t.Fatal("the warm-up step is shown")
	}
	medians := map[string]int{}
	for _, st := range res.Steps[1:] {
		checkPeerStep(t, st)
		if st.Rate == 2000 && !st.Max {
			if st.Round < 1 || st.Round > 2 {
				t.Errorf("%s 2k/s step in round %d", st.System, st.Round)
			}
			if !st.Spare {
				medians[st.System]++
			}
		}
		if st.Probe && st.Rate != 3000 {
			t.Errorf("%s probed %d msgs/s, want 3000", st.System, st.Rate)
		}
		if st.Max && st.Rate != 3000 && st.Rate != 2000 {
			t.Errorf("%s max %d msgs/s", st.System, st.Rate)
		}
	}
	for sys, n := range medians {
		if n != 1 {
			t.Errorf("%s: %d median 2k/s steps, want 1", sys, n)
		}
	}
	// Outputs: JSON, PNG, README.
	data, err := os.ReadFile(filepath.Join(cfg.Out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil || len(back.Steps) != len(res.Steps) {
		t.Fatalf("results.json: %v", err)
	}
	f, err := os.Open(filepath.Join(cfg.Out, "latency.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() != plotW {
		t.Fatalf("png: %v", err)
	}
	rd, _ := os.ReadFile(readme)
	if !strings.Contains(string(rd), "| nats | 2k/s |") || !strings.Contains(string(rd), "| nats | max: ") || !strings.HasSuffix(string(rd), "<!-- perf:end -->\ntail\n") {
		t.Fatalf("README:\n%s", rd)
	}
	if !strings.Contains(progress.String(), "step 1/") {
		t.Fatalf("progress: %q", progress.String())
	}
}

// checkPeerStep: every published message reached each of its subscribers
// and every delivery is in the end-to-end histogram.
func checkPeerStep(t *testing.T, st StepResult) {
	t.Helper()
	if st.Err != "" {
		t.Fatalf("%s step: %s", st.System, st.Err)
	}
	t.Logf("%s: published %d (%.0f/s) delivered %d of %d, cpu %v (%.0f ns/delivery), rss/client %.0f B, e2e p50 %s us",
		st.System, st.Published, st.AchievedRate, st.Delivered, st.Expected, st.ServerCPU, st.CPUPerDeliveryNs,
		st.RSSPerClient, latency.Micros(st.Latency.Hops[latency.HopEndToEnd].P50))
	// 2000/s for 2 s: about 4000 messages, each to 50*4/20 = 10 clients.
	if st.Published < 2000 || st.Expected != int64(st.Published)*10 {
		t.Fatalf("%s: published %d, expected deliveries %d", st.System, st.Published, st.Expected)
	}
	if st.Delivered != st.Expected || st.Harness.Conns != 50 || st.Harness.BadFrames != 0 || st.Harness.Disconnects != 0 {
		t.Fatalf("%s: delivered %d of %d; harness %+v", st.System, st.Delivered, st.Expected, st.Harness)
	}
	e2e := st.Latency.Hops[latency.HopEndToEnd]
	if e2e.Count+st.WarmupFrames != st.Delivered || e2e.Errors != 0 || e2e.P50 <= 0 || e2e.Max < e2e.P50 {
		t.Fatalf("%s: end-to-end %+v + %d warm-up frames, delivered %d", st.System, e2e, st.WarmupFrames, st.Delivered)
	}
	if st.Warmup > 0 && (st.WarmupFrames == 0 || st.WarmupFrames >= st.Delivered) {
		t.Fatalf("%s: %d of %d frames in the %v warm-up", st.System, st.WarmupFrames, st.Delivered, st.Warmup)
	}
	for _, h := range []latency.Hop{latency.HopExchRoot, latency.HopRootChild, latency.HopChildClient} {
		if st.Latency.Hops[h].Count != 0 {
			t.Fatalf("%s recorded for a peer", h)
		}
	}
	if st.HDR == nil || st.HDR.Count(latency.HopEndToEnd) != e2e.Count {
		t.Fatalf("%s: lossless HDR missing", st.System)
	}
	if st.CPUPerDeliveryNs <= 0 || st.ServerRSS <= 0 {
		t.Fatalf("%s: cpu %v rss %d", st.System, st.CPUPerDeliveryNs, st.ServerRSS)
	}
}

func TestPublisherMaxMessagesNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- natspeer.Run(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a.String() })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatal(err)
	}
	sc := Scenario{Clients: 3, SubsPerClient: 5, Symbols: 5}
	rec := latency.NewRecorder(2)
	hc := harness.DefaultConfig()
	hc.Protocol, hc.Addrs, hc.Clients, hc.Recorder = harness.NATS, []string{addr}, 3, rec
	hc.Subscriptions = func(i int) []string {
		var s []string
		for _, c := range sc.Subscriptions(i) {
			s = append(s, Subject(c))
		}
		return s
	}
	h, err := harness.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(PublisherConfig{Protocol: "nats", Addr: addr, Source: NewFeedSource(5, 1), MaxMessages: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := h.WaitQuiet(ctx, 3000, 2*time.Second)
	if pub.Published() != 1000 || st.Frames != 3000 || rec.Merged().Count(latency.HopEndToEnd) != 3000 {
		t.Fatalf("published %d, frames %d", pub.Published(), st.Frames)
	}
	var total uint64
	for _, n := range pub.Counts() {
		total += n
	}
	if total != 1000 {
		t.Fatalf("counts sum %d", total)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigAndRates(t *testing.T) {
	r, err := ParseRates("10000, 50k,max")
	if err != nil || len(r) != 3 || r[0] != 10000 || r[1] != 50000 || r[2] != 0 {
		t.Fatalf("%v %v", r, err)
	}
	for _, bad := range []string{"", "x", "-5", "10kk"} {
		if _, err := ParseRates(bad); err == nil {
			t.Errorf("ParseRates(%q) accepted", bad)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Config){
		"Rates":    func(c *Config) { c.Rates = nil },
		"Clients":  func(c *Config) { c.Clients = 0 },
		"Subs":     func(c *Config) { c.SubsPerClient = c.Symbols + 1 },
		"Systems":  func(c *Config) { c.Systems = []string{"kafka"} },
		"Duration": func(c *Config) { c.Duration = 0 },
		"Warmup":   func(c *Config) { c.Warmup = c.Duration },
		"Repeats":  func(c *Config) { c.Repeats = 0 },
	} {
		c := DefaultConfig()
		f(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	sc := Scenario{Clients: 5000, SubsPerClient: 4, Symbols: 2000}
	subs := sc.Subscribers()
	for code := 1; code <= 2000; code++ {
		if subs[code] != 10 {
			t.Fatalf("code %d has %d subscribers", code, subs[code])
		}
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (tick relay) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 123456789 3000 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	u, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if u.CPU != 3*time.Second || u.RSS != 3000*int64(os.Getpagesize()) {
		t.Fatalf("%+v", u)
	}
	self, err := ReadProc(0)
	if err != nil || self.RSS <= 0 {
		t.Fatalf("self: %+v %v", self, err)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestReplaceBetween(t *testing.T) {
	in := []byte("a\n" + ReadmeBegin + "\nold\n" + ReadmeEnd + "\nb\n")
	out, err := replaceBetween(in, ReadmeBegin, ReadmeEnd, "new table\n")
	if err != nil || string(out) != "a\n"+ReadmeBegin+"\nnew table\n"+ReadmeEnd+"\nb\n" {
		t.Fatalf("%q %v", out, err)
	}
	if _, err := replaceBetween([]byte("no markers"), ReadmeBegin, ReadmeEnd, "x"); err == nil {
		t.Fatal("missing markers accepted")
	}
}

func TestRatioTableAndPlot(t *testing.T) {
	mk := func(sys string, rate int, p50 int64) StepResult {
		h := latency.NewHops()
		for i := int64(1); i <= 100; i++ {
			d := p50 * i / 50 // each hop d ns
			st := wire.Stamps{ExchSend: 1e18, RootRecv: 1e18 + d, RootSend: 1e18 + d, ChildRecv: 1e18 + 2*d, ChildSend: 1e18 + 2*d}
			recv := st.ChildSend + d
			if sys != SystemTickrelay {
				st.RootRecv, st.RootSend, st.ChildRecv, st.ChildSend = 0, 0, 0, 0
			}
			h.Record(st, recv, 0)
		}
		return StepResult{Scenario: Scenario{System: sys, Rate: rate}, Latency: h.Snapshot(),
			CPUPerDeliveryNs: float64(p50) / 10, RSSPerClient: 1000, Delivered: 100, Expected: 100,
			DeliveryRate: 2.5 * float64(rate)}
	}
	res := &Results{Started: time.Now(), NumCPU: 2, GoVersion: "go", Notes: []string{"redis skipped"}}
	res.Steps = append(res.Steps, mk(SystemTickrelay, 10000, 20_000), mk(SystemNATS, 10000, 40_000))
	probe := mk(SystemTickrelay, 120000, 1)
	probe.Probe = true
	spare := mk(SystemTickrelay, 10000, 1) // a repeat that was not the median
	spare.Spare, spare.AchievedRate = true, 7777
	ourMax, natsMax := mk(SystemTickrelay, 80000, 20_000), mk(SystemNATS, 40000, 40_000)
	ourMax.Max, natsMax.Max = true, true
	res.Steps = append(res.Steps, spare, probe, ourMax, natsMax,
		StepResult{Scenario: Scenario{System: SystemRedis}, Err: "boom | x", Max: true})
	tab := RatioTable(res)
	for _, want := range []string{"| 10k/s | nats | 1.00 | 0.5", "| max (80k/s vs 40k/s) | nats | 2.00 | 0.5",
		"| tickrelay | max: 80k/s |", "| redis | max | error: boom / x", "Note: redis skipped"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "120k") || strings.Contains(tab, "7777") {
		t.Errorf("table shows a max-search probe or a spare repeat:\n%s", tab)
	}
	var buf bytes.Buffer
	if err := WritePlot(&buf, res); err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("PERF_PLOT_OUT"); out != "" { // to look at it
		os.WriteFile(out, buf.Bytes(), 0o644)
	}
	img, err := png.Decode(&buf)
	if err != nil || img.Bounds().Dy() != plotH {
		t.Fatalf("png: %v", err)
	}
}

// TestHarnessModesCost compares the harness's own CPU per frame and memory
// per connection in both read modes against a NATS process. It measures
// rather than asserts speed; run it with PERF_MODES=1 (about 10 s).
func TestHarnessModesCost(t *testing.T) {
	if os.Getenv("PERF_MODES") == "" {
		t.Skip("set PERF_MODES=1 to measure harness read modes")
	}
	for _, mode := range []harness.Mode{harness.ModeGoroutines, harness.ModeEpoll} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		srv, err := startProc(ctx, "nats", natsSpawner(ctx, "-addr", "127.0.0.1:0"), true, "", os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		sc := Scenario{Clients: 2000, SubsPerClient: 1, Symbols: 200}
		rec := latency.NewRecorder(16)
		hc := harness.DefaultConfig()
		hc.Protocol, hc.Addrs, hc.Clients, hc.Recorder, hc.Mode = harness.NATS, []string{srv.addr}, sc.Clients, rec, mode
		hc.Subscriptions = func(i int) []string { return []string{Subject(sc.Subscriptions(i)[0])} }
		before, _ := ReadProc(0)
		h, err := harness.New(hc)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		mid, _ := ReadProc(0)
		pub, _ := NewPublisher(PublisherConfig{Protocol: "nats", Addr: srv.addr, Rate: 20000, Source: NewFeedSource(200, 1)})
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		pub.Run(pctx)
		pcancel()
		st := h.WaitQuiet(ctx, int64(pub.Published())*10, time.Second)
		after, _ := ReadProc(0)
		h.Close()
		srv.stop()
		cancel()
		e2e := rec.Merged().Snapshot().Hops[latency.HopEndToEnd]
		t.Logf("%-10s frames %d of %d: process CPU %v = %.0f ns/frame (publisher included), RSS +%d KB for %d conns = %.1f KB/conn; e2e p50 %s p99 %s us",
			mode, st.Frames, pub.Published()*10, after.CPU-mid.CPU, float64(after.CPU-mid.CPU)/float64(max(st.Frames, 1)),
			(mid.RSS-before.RSS)/1024, sc.Clients, float64(mid.RSS-before.RSS)/1024/float64(sc.Clients), latency.Micros(e2e.P50), latency.Micros(e2e.P99))
	}
}

// When a daemon cannot start (this test binary only runs the NATS peer,
// which refuses a daemon's arguments), the tickrelay step must fail cleanly (recorded
// in its StepResult) rather than hang or abort the sweep.
func TestSweepTickrelayStepFailsCleanly(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rates, cfg.Clients, cfg.Symbols, cfg.Duration, cfg.Warmup, cfg.Repeats = []int{1000}, 2, 2, time.Second, 0, 1
	cfg.SweepWarmUp = 0
	cfg.Systems, cfg.Out, cfg.Spawn = []string{SystemTickrelay}, "", natsSpawner
	var err error
	for _, p := range []*int{&cfg.ExchangePort, &cfg.RootPort, &cfg.ChildPort} {
		if *p, err = freePort(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 1 || !strings.Contains(res.Steps[0].Err, "root exited before ready") {
		t.Fatalf("steps %+v", res.Steps)
	}
}

// TestSearchMax: the max search brackets a system's capacity from its
// fixed steps, within MaxTries extra steps, and reports none when nothing
// sustains.
func TestSearchMax(t *testing.T) {
	const limit = 500 * time.Millisecond
	step := func(rate, capacity int) StepResult {
		st := StepResult{Scenario: Scenario{System: "x", Rate: rate}, Expected: 100, Delivered: 100,
			AchievedRate: float64(rate)}
		st.Latency.Hops[latency.HopEndToEnd].P99 = int64(time.Millisecond)
		if rate > capacity {
			st.Latency.Hops[latency.HopEndToEnd].P99 = int64(3 * time.Second) // a growing backlog
		}
		return st
	}
	for _, tc := range []struct {
		name      string
		fixed     []int
		capacity  int
		wantRates []int // the probes, in order
		want      int   // the max found; 0 = none
	}{
		{"between fixed", []int{10_000, 50_000, 100_000}, 80_000, []int{75_000, 87_000, 81_000}, 75_000},
		{"above all fixed", []int{10_000, 50_000}, 100_000, []int{75_000, 112_000, 93_000}, 93_000},
		{"bracket closed", []int{90_000, 95_000, 100_000}, 97_000, nil, 95_000},
		{"below all fixed", []int{10_000}, 4_000, []int{5_000, 2_000, 3_000}, 3_000},
		{"nothing at all", []int{10_000}, 500, []int{5_000, 2_000, 1_000}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var steps []StepResult
			for _, r := range tc.fixed {
				steps = append(steps, step(r, tc.capacity))
			}
			var probes []int
			got := searchMax(steps, "x", 3, limit, func(rate int) StepResult {
				probes = append(probes, rate)
				return step(rate, tc.capacity)
			})
			if !slices.Equal(probes, tc.wantRates) {
				t.Errorf("probes %v, want %v", probes, tc.wantRates)
			}
			if tc.want == 0 {
				if got.Err == "" || got.System != "x" {
					t.Errorf("got %+v, want an error step for x", got)
				}
				return
			}
			if got.Err != "" || got.Rate != tc.want || got.Probe {
				t.Errorf("max %d (err %q), want %d", got.Rate, got.Err, tc.want)
			}
		})
	}
}

// TestMarkMedian: the step with the median end-to-end p99 stands for its
// runs; a failed run counts as the worst; of two, the better one.
func TestMarkMedian(t *testing.T) {
	mk := func(p99 int64, err string) StepResult {
		var st StepResult
		st.Latency.Hops[latency.HopEndToEnd].P99 = p99
		st.Err = err
		return st
	}
	for _, tc := range []struct {
		steps  []StepResult
		median int
	}{
		{[]StepResult{mk(5, ""), mk(1, ""), mk(3, "")}, 2},
		{[]StepResult{mk(1, "boom"), mk(9, ""), mk(2, "")}, 1},
		{[]StepResult{mk(7, ""), mk(4, "")}, 1},
		{[]StepResult{mk(7, "")}, 0},
	} {
		idx := make([]int, len(tc.steps))
		for i := range idx {
			idx[i] = i
		}
		markMedian(tc.steps, idx)
		for i, st := range tc.steps {
			if st.Spare != (i != tc.median) {
				t.Errorf("p99s %v: step %d spare %v, want the median at %d", tc.steps, i, st.Spare, tc.median)
			}
		}
	}
}

func TestDueStamp(t *testing.T) {
	const ms = int64(time.Millisecond)
	start := int64(1_000_000_000)
	for _, c := range []struct {
		name string
		now  int64
		seq  uint64
		rate int
		want int64
	}{
		{"no schedule", start + 500*ms, 1, 0, start + 500*ms},
		{"on time", start + 10*ms, 10_000, 1_000_000, start + 10*ms},                     // due at 10 ms
		{"within a tick", start + 10*ms + ms/2, 10_000, 1_000_000, start + 10*ms + ms/2}, // half a tick late
		{"held back", start + 300*ms, 10_000, 1_000_000, start + 11*ms},                  // due at 10 ms: the backlog counts
		{"early", start + 5*ms, 10, 1000, start + 5*ms},                                  // due at 10 ms, sent sooner
	} {
		if got := dueStamp(c.now, start, c.seq, c.rate); got != c.want {
			t.Errorf("%s: dueStamp = %d ms after start, want %d", c.name, (got-start)/ms, (c.want-start)/ms)
		}
	}
}

// TestProbeRate: a rate is sustained when most runs sustain it; the runs
// stop once the majority is settled.
func TestProbeRate(t *testing.T) {
	const limit = 500 * time.Millisecond
	run := func(p99s ...time.Duration) (func() StepResult, *int) {
		n := 0
		return func() StepResult {
			st := StepResult{Scenario: Scenario{System: "x", Rate: 1000}, Expected: 10, Delivered: 10, AchievedRate: 1000}
			st.Latency.Hops[latency.HopEndToEnd].P99 = int64(p99s[n])
			n++
			return st
		}, &n
	}
	for _, tc := range []struct {
		name     string
		repeats  int
		p99s     []time.Duration
		runs     int
		sustains bool
		p99      time.Duration // of the run returned
	}{
		{"two pass", 3, []time.Duration{300e6, 100e6}, 2, true, 100e6},
		{"two fail", 3, []time.Duration{900e6, 700e6}, 2, false, 700e6},
		{"lucky run outvoted", 3, []time.Duration{400e6, 800e6, 600e6}, 3, false, 600e6},
		{"unlucky run outvoted", 3, []time.Duration{800e6, 200e6, 300e6}, 3, true, 200e6},
		{"single run", 1, []time.Duration{600e6}, 1, false, 600e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, n := run(tc.p99s...)
			got := probeRate(tc.repeats, limit, f)
			if *n != tc.runs {
				t.Errorf("%d runs, want %d", *n, tc.runs)
			}
			if got.Sustained(limit) != tc.sustains || got.Latency.Hops[latency.HopEndToEnd].P99 != int64(tc.p99) {
				t.Errorf("got p99 %v (sustained %v), want %v (%v)", time.Duration(got.Latency.Hops[latency.HopEndToEnd].P99),
					got.Sustained(limit), tc.p99, tc.sustains)
			}
		})
	}
}

// The NATS peer is a binary of its own: found on PATH (or next to the
// running binary), else NATS is skipped with a note rather than failing the
// sweep.
func TestNATSPeerLookup(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if _, err := NATSPeerSpawner(); err == nil || !strings.Contains(err.Error(), NATSPeerName) {
		t.Fatalf("no peer binary anywhere: err %v", err)
	}
	cfg := DefaultConfig()
	cfg.Systems, cfg.Rates, cfg.Out, cfg.SweepWarmUp = []string{SystemNATS}, []int{1000}, "", 0
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 0 || !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, "nats skipped: ") }) {
		t.Fatalf("steps %d, notes %q", len(res.Steps), res.Notes)
	}
	peer := filepath.Join(dir, NATSPeerName)
	if err := os.WriteFile(peer, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := NATSPeerSpawner()
	if err != nil {
		t.Fatal(err)
	}
	if cmd := sp(t.Context(), "-addr", "127.0.0.1:0"); cmd.Path != peer || !slices.Equal(cmd.Args[1:], []string{"-addr", "127.0.0.1:0"}) {
		t.Fatalf("spawns %s %q, want %s", cmd.Path, cmd.Args, peer)
	}
}
