package main

import (
	"context"
	"os"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/feed"
)

func init() {
	commands["exchange"] = command{"exchange simulator: OMD-style feed with logon and retransmission", runExchange}
}

func runExchange(ctx context.Context, args []string) error {
	cfg := feed.DefaultConfig()
	fs := newFlags("exchange")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "feed listen address")
	fs.StringVar(&cfg.User, "user", cfg.User, "accepted logon user (at most 16 bytes)")
	fs.StringVar(&cfg.Password, "password", cfg.Password, "accepted logon password (at most 16 bytes)")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "messages per second; 0 = as fast as possible")
	fs.IntVar(&cfg.Symbols, "symbols", cfg.Symbols, "securities (codes 1..N)")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "market seed: the same seed gives the same stream")
	fs.Float64Var(&cfg.BurstFactor, "burst", cfg.BurstFactor, "rate multiplier during bursts (<= 1: no bursts)")
	fs.DurationVar(&cfg.BurstEvery, "burst-every", cfg.BurstEvery, "time between burst starts")
	fs.DurationVar(&cfg.BurstFor, "burst-for", cfg.BurstFor, "length of a burst")
	fs.Uint64Var(&cfg.MaxSeq, "max-seq", cfg.MaxSeq, "stop generating after this seq (0 = endless); sessions stay up")
	sizeVar(fs, &cfg.Retain, "retain", cfg.Retain, "messages kept for retransmission (0 = all; ~50 B each)")
	epochVar(fs, &cfg.Epoch, "epoch", "session id of the stream (0 = the start time in Unix seconds: each start is a new trading day); pin it to continue a session across restarts")
	fs.Uint64Var(&cfg.ResetEvery, "reset-every", 0, "send a Sequence Reset (a new epoch, seqs from 1) after every N items of an epoch (0 = never)")
	fs.Uint64Var(&cfg.ResetAt, "reset-at", 0, "send one Sequence Reset after item SEQ of the first epoch (0 = never)")
	fs.BoolVar(&cfg.StartOnLogon, "start-on-logon", cfg.StartOnLogon, "hold the generator until the first successful logon")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", cfg.Heartbeat, "idle time before a heartbeat")
	fs.DurationVar(&cfg.LoginTimeout, "login-timeout", cfg.LoginTimeout, "close connections that do not log on within this")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "close sessions whose writes block this long")
	admin := fs.String("admin", "", "admin address for /metrics and /healthz (empty = off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	// One Go processor: a feed is one generator goroutine's work, and with
	// idle Ps the runtime woke and parked spare threads around every 1 ms
	// tick (at 10k msgs/s: 5.1k context switches/s and 16% of a CPU; on one
	// P 1.9k/s and 8%, the rate kept at 200k msgs/s). An explicit
	// GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	reg := prometheus.NewRegistry()
	cfg.Logger, cfg.Registerer = log, reg
	srv, err := feed.New(cfg)
	if err != nil {
		return err
	}
	if err := serveAdmin(ctx, *admin, reg, log); err != nil {
		return err
	}
	return srv.Run(ctx)
}
