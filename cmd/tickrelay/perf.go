package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"

	"tickrelay/perf"
	"tickrelay/perf/harness"
)

func init() {
	commands["perf"] = command{"latency sweep against NATS/Redis: JSON, PNG, README table", runPerf}
}

func runPerf(ctx context.Context, args []string) error {
	def := perf.DefaultConfig()
	fs := newFlags("perf")
	rates := fs.String("rates", "10000,50000,100000,200000,max", "target exchange rates, msgs/s (NNk ok), one step each; max = search each system's highest sustained rate")
	clients := fs.Int("clients", def.Clients, "subscriber connections")
	subs := fs.Int("subs", def.SubsPerClient, "symbols per client")
	children := fs.Int("children", def.Children, "tickrelay child daemons")
	symbols := fs.Int("symbols", def.Symbols, "securities in the feed")
	seed := fs.Int64("seed", def.Seed, "feed seed")
	duration := fs.Duration("duration", def.Duration, "publishing time per step")
	warmup := fs.Duration("warmup", def.Warmup, "start of each step left out of the latency histograms (frames still counted)")
	sweepWarmUp := fs.Duration("sweep-warmup", def.SweepWarmUp, "publishing time of one unshown step before the sweep, warming the host and the load clients (0 = none)")
	repeats := fs.Int("repeats", def.Repeats, "runs of each fixed rate per system; the median by end-to-end p99 is reported")
	maxTries := fs.Int("max-tries", def.MaxTries, `extra rates per system searching the highest sustained rate for "max" (each decided by most of -repeats runs)`)
	sustain := fs.Duration("sustain-p99", def.SustainP99, "the end-to-end p99 a sustained step stays within")
	peers := fs.String("peers", "nats,redis", "peer systems (nats, redis; nats needs tickrelay-natspeer next to this binary or on PATH, redis needs redis-server on PATH); empty = none")
	ours := fs.Bool("tickrelay", true, "measure tickrelay itself (exchange, root, children as processes)")
	out := fs.String("out", def.Out, "results directory (results.json, latency.png); empty = none")
	readme := fs.String("update-readme", "", "README whose <!-- perf:begin/end --> markers get the ratio table")
	exPort := fs.Int("exchange-port", def.ExchangePort, "exchange simulator port (127.0.0.1)")
	rootPort := fs.Int("root-port", def.RootPort, "root relay port (127.0.0.1)")
	childPort := fs.Int("child-port", def.ChildPort, "first child client port (127.0.0.1); children take consecutive ports")
	mode := fs.String("harness-mode", string(def.HarnessMode), "how load clients read: goroutines (one per conn) or epoll (workers)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	harnessProfile := fs.String("harness-profile", "", "write a CPU profile of this process (load clients, peers' publisher) over the whole sweep to this file")
	rootFlags := fs.String("root-flags", strings.Join(def.RootArgs, " "), `extra flags for the tickrelay root, space-separated (peers persist nothing: the journal is kept, its fsync is not)`)
	serverNice := fs.Int("server-nice", def.ServerNice, "nice value of servers and feed sources relative to the load clients (< 0: they take priority, as on machines of their own; needs CAP_SYS_NICE; 0 = all alike)")
	childFlags := fs.String("child-flags", "", `extra flags for every tickrelay child, space-separated (e.g. "-loops 1")`)
	serverLog := fs.String("server-log", "", "append the server processes' logs (stderr) to this file (empty = discard)")
	profileDir := fs.String("profile-dir", "", "save CPU profiles of the exchange, root and children over each tickrelay step here (empty = none)")
	slowDef := perf.DefaultSlowConfig()
	slowStalled := fs.Int("slow-stalled", slowDef.Stalled, "slow-consumer step: clients that send SUB * and never read (0 = skip the step)")
	slowReaders := fs.Int("slow-readers", slowDef.Readers, "slow-consumer step: reading clients of one symbol each")
	slowRate := fs.Int("slow-rate", slowDef.Rate, "slow-consumer step: exchange rate, msgs/s")
	slowRepeats := fs.Int("slow-repeats", slowDef.Repeats, "slow-consumer step: runs per policy, with and without the stalled clients")
	slowPolicies := fs.String("slow-policies", strings.Join(slowDef.Policies, ","), "slow-consumer step: child -slow-policy values to measure")
	slowOnly := fs.Bool("slow-only", false, "run only the slow-consumer step (= -steps slow)")
	steps := fs.String("steps", "sweep,fanout,writes,seed,slow", "steps to run, in this order: sweep (the rates above), fanout (-fanout-subs symbols per client), writes (the child's -writes paths side by side), seed (root -> -seed-lines counting lines), slow (slow consumers)")
	fanoutSubs := fs.Int("fanout-subs", 10, "fan-out step: symbols per client (5000 x 10 of 2000: each item to 25 clients)")
	fanoutRates := fs.String("fanout-rates", "5000,20000", "fan-out step: rates, msgs/s")
	writesRate := fs.Int("writes-rate", 200_000, "write-path step: rate, msgs/s")
	writesPaths := fs.String("writes-paths", "syscall,uring", "write-path step: the child -writes values compared")
	seedDef := perf.DefaultSeedConfig()
	seedLines := fs.Int("seed-lines", seedDef.Lines, "seed-shape step: relay lines (children that only count) on the root")
	seedRate := fs.Int("seed-rate", seedDef.Rate, "seed-shape step: rate, msgs/s")
	seedClients := fs.Int("seed-clients", seedDef.Clients, "seed-shape step: clients per child in its run with real children (0 = no such run)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	cfg := def
	if cfg.Rates, err = perf.ParseRates(*rates); err != nil {
		return fmt.Errorf("-rates: %w", err)
	}
	cfg.Clients, cfg.SubsPerClient, cfg.Children, cfg.Symbols = *clients, *subs, *children, *symbols
	cfg.Seed, cfg.Duration, cfg.Out, cfg.UpdateReadme = *seed, *duration, *out, *readme
	cfg.Repeats, cfg.MaxTries, cfg.SustainP99, cfg.ProfileDir, cfg.Warmup = *repeats, *maxTries, *sustain, *profileDir, *warmup
	cfg.SweepWarmUp = *sweepWarmUp
	cfg.ChildArgs, cfg.RootArgs = strings.Fields(*childFlags), strings.Fields(*rootFlags)
	cfg.ServerNice = *serverNice
	cfg.Command = strings.Join(append([]string{os.Args[0], "perf"}, args...), " ")
	cfg.ExchangePort, cfg.RootPort, cfg.ChildPort = *exPort, *rootPort, *childPort
	cfg.HarnessMode = harness.Mode(*mode)
	cfg.Systems = nil
	if *ours {
		cfg.Systems = append(cfg.Systems, perf.SystemTickrelay)
	}
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Systems = append(cfg.Systems, p)
		}
	}
	cfg.Logger = log
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	if *serverLog != "" {
		f, err := os.OpenFile(*serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.ServerLog = f
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Thousands of client sockets (and as many on the servers, which
	// inherit the limit): raise the soft open-files limit to the hard one.
	if n, err := raiseNoFile(); err != nil {
		log.Warn("cannot raise RLIMIT_NOFILE", "err", err)
	} else if need := uint64(2*max(cfg.Clients, *slowReaders+*slowStalled) + 1000); n < need {
		log.Warn("open-files limit may be too low for the clients", "limit", n, "want", need)
	}
	if *harnessProfile != "" {
		f, err := os.Create(*harnessProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sl := slowDef
	sl.Stalled, sl.Readers, sl.Rate, sl.Repeats = *slowStalled, *slowReaders, *slowRate, *slowRepeats
	sl.Policies = strings.Split(*slowPolicies, ",")
	run := map[string]bool{}
	for _, st := range strings.Split(*steps, ",") {
		switch st = strings.TrimSpace(st); st {
		case "sweep", "fanout", "writes", "seed", "slow":
			run[st] = true
		case "":
		default:
			return fmt.Errorf("-steps: unknown step %q", st)
		}
	}
	if *slowOnly {
		run = map[string]bool{"slow": true}
	}
	if *slowStalled > 0 && run["slow"] {
		if err := sl.Validate(); err != nil {
			return err
		}
	}
	fanRates, err := perf.ParseRates(*fanoutRates)
	if err != nil {
		return fmt.Errorf("-fanout-rates: %w", err)
	}
	var sweep *perf.Results
	if run["sweep"] {
		if sweep, err = runSweep(ctx, cfg); err != nil {
			return err
		}
	}
	if run["fanout"] && *fanoutSubs > 0 {
		res, err := perf.RunFanout(ctx, cfg, *fanoutSubs, fanRates)
		if res != nil {
			fmt.Print("\nfan-out:\n", perf.RatioTable(res))
		}
		if err != nil {
			return err
		}
	}
	if run["writes"] && *writesRate > 0 {
		res, err := perf.RunWrites(ctx, cfg, *writesRate, strings.Split(*writesPaths, ","))
		if res != nil {
			fmt.Print("\nclient write paths:\n", perf.WritesTable(res))
		}
		if err != nil {
			return err
		}
	}
	if run["seed"] && *seedLines > 0 {
		sd := seedDef
		sd.Lines, sd.Rate, sd.Repeats, sd.Clients = *seedLines, *seedRate, cfg.Repeats, *seedClients
		res, err := perf.RunSeed(ctx, cfg, sd)
		if res != nil {
			if sweep != nil {
				res.ChildNsPerItem, res.ChildClients = perf.ChildCost(sweep, sd.Rate)
			}
			fmt.Print("\nseed shape:\n", perf.SeedTable(res))
			if werr := perf.WriteSeed(cfg, res); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			return err
		}
	}
	if *slowStalled == 0 || !run["slow"] {
		return nil
	}
	sres, err := perf.RunSlow(ctx, cfg, sl)
	if sres != nil {
		fmt.Print("\nslow consumers:\n", perf.SlowTable(sres))
		if err == nil && !sres.Pass() {
			err = fmt.Errorf("perf: the slow-consumer step failed its checks")
		}
	}
	return err
}

// runSweep runs the latency sweep and prints its tables.
func runSweep(ctx context.Context, cfg perf.Config) (*perf.Results, error) {
	res, err := perf.Run(ctx, cfg)
	if res != nil {
		fmt.Print(perf.RatioTable(res))
		for _, st := range res.Steps {
			fmt.Printf("\n%s %s:\n", st.System, st.RateLabel())
			if st.Err != "" {
				fmt.Printf("error: %s\n", st.Err)
				continue
			}
			st.Latency.WriteTable(os.Stdout)
			if st.FramesPerWrite > 0 {
				fmt.Printf("frames per client write: %.2f\n", st.FramesPerWrite)
			}
		}
	}
	return res, err
}

// raiseNoFile sets the soft RLIMIT_NOFILE to the hard limit and returns it.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}
