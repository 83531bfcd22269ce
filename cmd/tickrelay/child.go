package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child"
	"tickrelay/internal/gnetprocs"
)

func init() {
	commands["child"] = command{"child daemon: relay from a root (or an A/B pair), fan out text frames to clients", runChild}
}

func runChild(ctx context.Context, args []string) error {
	cfg := child.DefaultConfig()
	fs := newFlags("child")
	roots := fs.String("root", strings.Join(cfg.Roots, ","), "root relay address; an A/B pair as addrA,addrB (each seq is taken from whichever root delivers it first)")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "client listen address")
	admin := fs.String("admin", "", "admin address (/metrics, /healthz), e.g. 127.0.0.1:9201; empty disables")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "child name (sent to the root, labels logs and metrics)")
	fs.Uint64Var(&cfg.FromSeq, "from", cfg.FromSeq, "first seq to ask the root for")
	fs.IntVar(&cfg.Loops, "loops", cfg.Loops, "event loops serving clients")
	sizeVar(fs, &cfg.MaxPending, "max-pending", cfg.MaxPending, "unsent bytes per client before the slow-client policy applies")
	sizeVar(fs, &cfg.ClientSendBuffer, "client-sndbuf", cfg.ClientSendBuffer, "kernel send buffer of each client socket (SO_SNDBUF; 0 = kernel autotuning); bytes in it are on top of -max-pending")
	fs.StringVar(&cfg.SlowPolicy, "slow-policy", cfg.SlowPolicy, "slow clients: disconnect (ERR SLOW) or conflate (no frames until the backlog drains, then each symbol's image and OK SUB again)")
	fs.DurationVar(&cfg.SlowTimeout, "slow-timeout", cfg.SlowTimeout, "conflate: disconnect a client still behind after this long")
	fs.DurationVar(&cfg.SlowLinger, "slow-linger", cfg.SlowLinger, "a slow client cut has this long to read its last frames and ERR SLOW line before it is closed")
	fs.IntVar(&cfg.HistorySize, "history", cfg.HistorySize, "frames kept for RESUME")
	sizeVar(fs, &cfg.HistoryBytes, "history-bytes", cfg.HistoryBytes, "bytes of frames kept for RESUME (resident from the start)")
	fs.IntVar(&cfg.MaxCommandsPerSec, "max-commands", cfg.MaxCommandsPerSec, "client command lines per second before ERR FLOOD")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", cfg.IdleTimeout, "reconnect when the root is silent this long")
	fs.DurationVar(&cfg.AnnounceEvery, "announce-every", cfg.AnnounceEvery, "how often the child announces itself to its roots for the directory (their -announce-every)")
	cfg.DrainGrace = 10 * time.Second
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", cfg.DrainGrace, "on SIGTERM (or POST /drain on -admin): announce draining, send clients INFO DRAIN and wait up to this long for them to move before closing (0: close at once)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.Roots = strings.Split(*roots, ",")
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	cfg.Logger, cfg.Registerer = log, reg
	if err := cfg.Validate(); err != nil {
		return err
	}
	gnetprocs.Reserve(cfg.Loops)
	ch, err := child.New(cfg)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	drain := adminRoute{"POST /drain", func(w http.ResponseWriter, r *http.Request) {
		grace := cfg.DrainGrace
		if g, err := time.ParseDuration(r.URL.Query().Get("grace")); err == nil && g >= 0 {
			grace = g
		}
		go func() {
			ch.Drain(context.Background(), grace)
			if r.URL.Query().Get("stop") != "0" {
				stop() // drained: the daemon stops, as on SIGTERM
			}
		}()
		fmt.Fprintf(w, "draining for up to %s\n", grace)
	}}
	if err := serveAdmin(ctx, *admin, reg, log, drain); err != nil {
		return err
	}
	return ch.Run(runCtx)
}
