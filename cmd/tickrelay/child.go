package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
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
	fs.StringVar(&cfg.Writes, "writes", cfg.Writes, "how client frames reach the kernel: syscall (a write(2) per client), uring (one io_uring submission per flush; an error where io_uring is refused) or auto (uring where available)")
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
	fs.IntVar(&cfg.MaxClients, "max-clients", cfg.MaxClients, "connections at most (0: no limit); more get ERR BUSY and are closed")
	fs.IntVar(&cfg.MaxClientsPerIP, "max-clients-per-ip", cfg.MaxClientsPerIP, "connections at most from one IP address (0: no limit)")
	fs.Float64Var(&cfg.AcceptRate, "accept-rate", cfg.AcceptRate, "connections accepted per second (0: no limit); over it ERR BUSY retry=<ms>")
	fs.IntVar(&cfg.AcceptBurst, "accept-burst", cfg.AcceptBurst, "connections accepted at once above -accept-rate")
	fs.Float64Var(&cfg.CmdRate, "cmd-rate", cfg.CmdRate, "command lines per second per client (0: no limit); over it ERR BUSY retry=<ms>, the connection lives (-max-commands still cuts floods)")
	fs.IntVar(&cfg.CmdBurst, "cmd-burst", cfg.CmdBurst, "command lines at once above -cmd-rate")
	fs.IntVar(&cfg.MaxSubs, "max-subs", cfg.MaxSubs, "subscriptions per client (0: no limit; '*' counts one); over it ERR LIMIT")
	fs.IntVar(&cfg.MaxAlerts, "max-alerts", cfg.MaxAlerts, "standing alerts per identity (0: no limit); over it ERR LIMIT")
	fs.Uint64Var(&cfg.ShedBacklog, "shed-backlog", cfg.ShedBacklog, "while an event loop's fan-out is this many seqs behind, its SUB and RESUME get ERR BUSY and /healthz says degraded (0: never)")
	fs.StringVar(&cfg.Entitlements, "entitlements", cfg.Entitlements, "file of tokens and the symbols each may see (clients must AUTH first); reloaded on SIGHUP and when it changes")
	fs.DurationVar(&cfg.AuthTimeout, "auth-timeout", cfg.AuthTimeout, "with -entitlements: time a client has to send AUTH")
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
	health := adminRoute{"/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ch.Health()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	}}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				ch.Reload() // logs its error; the table in force stays
			case <-runCtx.Done():
				return
			}
		}
	}()
	if err := serveAdmin(ctx, *admin, reg, log, drain, health); err != nil {
		return err
	}
	notifyChild(runCtx, ch)
	return ch.Run(runCtx)
}
