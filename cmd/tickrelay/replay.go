package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/replay"
)

func init() {
	commands["replay"] = command{"record a live feed to a capture file, or serve a capture/backup as an exchange", runReplay}
}

func runReplay(ctx context.Context, args []string) error {
	const usage = "usage: tickrelay replay record|serve|info [flags] (run 'tickrelay replay <sub> -h')"
	if len(args) == 0 {
		return errors.New(usage)
	}
	if isHelp(args[0]) {
		fmt.Println(usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "record":
		return runReplayRecord(ctx, args[1:])
	case "serve":
		return runReplayServe(ctx, args[1:])
	case "info":
		return runReplayInfo(args[1:])
	}
	return fmt.Errorf("unknown replay subcommand %q; %s", args[0], usage)
}

func runReplayRecord(ctx context.Context, args []string) error {
	cfg := replay.DefaultRecordConfig()
	fs := newFlags("replay record")
	fs.StringVar(&cfg.Exchange, "exchange", cfg.Exchange, "exchange feed address to record")
	fs.StringVar(&cfg.Out, "out", "", "capture file to create (never overwritten)")
	fs.StringVar(&cfg.User, "user", cfg.User, "logon user")
	fs.StringVar(&cfg.Password, "password", cfg.Password, "logon password")
	fs.Uint64Var(&cfg.FromSeq, "from-seq", cfg.FromSeq, "first seq to record (0 = from the live edge)")
	fs.Uint64Var(&cfg.Max, "max", cfg.Max, "stop after this many frames (0 = until interrupted)")
	fs.IntVar(&cfg.FlushRecords, "flush-records", cfg.FlushRecords, "write a block after this many records")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", cfg.FlushInterval, "write a block at the latest this long after its first record")
	progress := fs.Bool("progress", false, "show progress on stderr even when it is not a terminal")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	cfg.Logger = log
	rec, err := replay.NewRecorder(cfg)
	if err != nil {
		return err
	}
	stop := showProgress(ctx, *progress, rec.Progress)
	err = rec.Run(ctx)
	stop()
	p := rec.Progress()
	if p.Elapsed == 0 {
		return err // never started (the file could not be created)
	}
	fmt.Fprintf(os.Stderr, "recorded %d frames (last seq %d), %d bytes of frames in %v, %d reconnects -> %s\n",
		p.Frames, p.Seq, p.Bytes, p.Elapsed.Round(time.Millisecond), rec.Reconnects(), cfg.Out)
	return err
}

func runReplayServe(ctx context.Context, args []string) error {
	cfg := replay.DefaultConfig()
	fs := newFlags("replay serve")
	in := fs.String("in", "", "capture file to play")
	pgDSN := fs.String("from-postgres", "", "play the root's PostgreSQL backup at this DSN instead of a capture")
	table := fs.String("table", "tickrelay_items", "backup table (with -from-postgres)")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "feed listen address")
	fs.StringVar(&cfg.User, "user", cfg.User, "accepted logon user")
	fs.StringVar(&cfg.Password, "password", cfg.Password, "accepted logon password")
	fs.Float64Var(&cfg.Speed, "speed", cfg.Speed, "pacing: 1 = recorded inter-arrival times, 10 = ten times faster")
	fs.BoolVar(&cfg.Max, "max", cfg.Max, "play as fast as possible (ignores -speed)")
	fs.BoolVar(&cfg.Loop, "loop", cfg.Loop, "play again and again; pass k carries seq + k*span (one ever-increasing stream)")
	fs.BoolVar(&cfg.Restamp, "restamp", cfg.Restamp, "rewrite each frame's send time to when it is sent (default: bodies verbatim)")
	fs.BoolVar(&cfg.StartOnLogon, "start-on-logon", cfg.StartOnLogon, "hold playback until the first successful logon")
	fs.DurationVar(&cfg.Spin, "spin", cfg.Spin, "yield-spin this long before each frame time instead of sleeping (tighter pacing, more CPU; 0..10ms)")
	sizeVar(fs, &cfg.Retain, "retain", cfg.Retain, "frames kept for retransmission (0 = all; ~64 B each)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", cfg.Heartbeat, "idle time before a heartbeat")
	fs.DurationVar(&cfg.LoginTimeout, "login-timeout", cfg.LoginTimeout, "close connections that do not log on within this")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", cfg.WriteTimeout, "close sessions whose writes block this long")
	var sel replay.Select
	fs.Uint64Var(&sel.FromSeq, "from-seq", 0, "first seq to play")
	fs.Uint64Var(&sel.ToSeq, "to-seq", 0, "last seq to play (0 = to the end)")
	epochVar(fs, &sel.Epoch, "epoch", "the epoch (trading session) to play (0 = from Postgres the newest in the table; from a capture every one, each change played as a Sequence Reset)")
	fs.Uint64Var(&cfg.ResetEvery, "reset-every", 0, "send a Sequence Reset (a new epoch, seqs from 1) after every N records of an epoch (0 = never)")
	fs.Uint64Var(&cfg.ResetAt, "reset-at", 0, "send one Sequence Reset after the record with seq SEQ (0 = never)")
	var fromT, toT timeFlag
	fs.Var(&fromT, "from-time", "play records from this time: RFC3339 or unix ns (capture: receive time; postgres: exch_send)")
	fs.Var(&toT, "to-time", "play records up to this time (inclusive)")
	fs.Var(&fromT, "from", "alias of -from-time (for -from-postgres: exch_send)")
	fs.Var(&toT, "to", "alias of -to-time")
	allowDamaged := fs.Bool("allow-damaged", false, "serve the readable prefix of a torn or corrupt capture")
	linger := fs.Duration("linger", 0, "after playback ends, keep serving this long, then exit (0 = until interrupted)")
	progress := fs.Bool("progress", false, "show progress on stderr even when it is not a terminal")
	admin := fs.String("admin", "", "admin address for /metrics and /healthz (empty = off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sel.FromTime, sel.ToTime = fromT.ns, toT.ns
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	switch {
	case (*in == "") == (*pgDSN == ""):
		return errors.New("give exactly one of -in FILE and -from-postgres DSN")
	case cfg.Max && isSet(fs, "speed"):
		return errors.New("-max and -speed exclude each other")
	}
	if *in != "" {
		r, err := replay.Open(*in)
		if err != nil {
			return err
		}
		if d := r.Damage(); d != nil {
			if !*allowDamaged {
				r.Close()
				return fmt.Errorf("%w\n%d records (seqs %d..%d) before it are readable; rerun with -allow-damaged to serve them",
					d, r.Records(), r.FirstSeq(), r.LastSeq())
			}
			log.Warn("serving the readable prefix of a damaged capture", "damage", d, "records", r.Records())
		} else if !r.Indexed() {
			log.Info("capture has no index (not closed cleanly); rebuilt it by scanning", "blocks", len(r.Blocks()))
		}
		src, err := replay.NewCaptureSource(r, sel)
		if err != nil {
			r.Close()
			return err
		}
		cfg.Source = src
	} else {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		src, err := replay.NewPostgresSource(pctx, *pgDSN, *table, sel)
		cancel()
		if err != nil {
			return err
		}
		cfg.Source = src
	}
	defer cfg.Source.Close()
	reg := prometheus.NewRegistry()
	cfg.Logger, cfg.Registerer = log, reg
	srv, err := replay.New(cfg)
	if err != nil {
		return err
	}
	if err := serveAdmin(ctx, *admin, reg, log); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := showProgress(ctx, *progress, srv.Progress)
	var (
		wg      sync.WaitGroup
		printed atomic.Bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-srv.Done():
		case <-ctx.Done():
			return
		}
		stop()
		if err := srv.Err(); err != nil {
			log.Error("playback stopped early; sessions stay up", "err", err)
		}
		printed.Store(true)
		fmt.Fprintln(os.Stderr, "replay:", srv.Summary())
		if *linger > 0 {
			select {
			case <-time.After(*linger):
				cancel()
			case <-ctx.Done():
			}
		}
	}()
	err = srv.Run(ctx)
	cancel()
	wg.Wait()
	stop()
	if !printed.Load() {
		fmt.Fprintln(os.Stderr, "replay (interrupted):", srv.Summary())
	}
	if err == nil {
		err = srv.Err()
	}
	return err
}

func runReplayInfo(args []string) error {
	fs := newFlags("replay info")
	in := fs.String("in", "", "capture file")
	verify := fs.Bool("verify", false, "read every block and check its CRC and records")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, err := replay.Open(*in)
	if err != nil {
		return err
	}
	defer r.Close()
	h := r.Header()
	w := os.Stdout
	fmt.Fprintf(w, "file      %s (%d bytes)\nformat    version %d\ncreated   %s\nsource    %s\n", r.Path(), r.Size(), h.Version,
		time.Unix(0, h.Created).UTC().Format(time.RFC3339Nano), h.Source)
	fmt.Fprintf(w, "records   %d, %d blocks, indexed %v\n", r.Records(), len(r.Blocks()), r.Indexed())
	for _, e := range r.Epochs() {
		fmt.Fprintf(w, "epoch     %d: seqs %d..%d (%d records)\n", e.Epoch, e.First, e.Last, e.Records)
	}
	if b := r.Blocks(); len(b) > 0 {
		t0, t1 := b[0].FirstRecv, b[len(b)-1].LastRecv
		fmt.Fprintf(w, "received  %s .. %s (%v)\n", time.Unix(0, t0).UTC().Format(time.RFC3339Nano),
			time.Unix(0, t1).UTC().Format(time.RFC3339Nano), time.Duration(t1-t0))
	}
	if d := r.Damage(); d != nil {
		fmt.Fprintf(w, "damage    %v\n", d)
	}
	if *verify {
		if err := r.Verify(); err != nil {
			return err
		}
		fmt.Fprintln(w, "verify    ok")
	}
	if r.Damage() != nil {
		return errors.New("capture is damaged (see above)")
	}
	return nil
}

// timeFlag parses RFC3339 (with optional fraction) or unix ns.
type timeFlag struct{ ns int64 }

func (f *timeFlag) String() string {
	if f == nil || f.ns == 0 {
		return ""
	}
	return strconv.FormatInt(f.ns, 10)
}

func (f *timeFlag) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		f.ns = n
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want RFC3339 (2026-01-02T01:30:00Z) or unix ns, got %q", s)
	}
	f.ns = t.UnixNano()
	return nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// showProgress draws get() on stderr until the returned stop is called:
// a bar redrawn in place on a terminal, a line every 5 s with -progress
// otherwise. stop is idempotent and clears the bar.
func showProgress(ctx context.Context, force bool, get func() replay.Progress) (stop func()) {
	tty := isTerminal(os.Stderr)
	if !tty && !force {
		return func() {}
	}
	every := 250 * time.Millisecond
	if !tty {
		every = 5 * time.Second
	}
	return progressLoop(ctx, os.Stderr, tty, every, get)
}

func progressLoop(ctx context.Context, w io.Writer, tty bool, every time.Duration, get func() replay.Progress) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-ctx.Done():
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				line := get().String()
				if tty {
					fmt.Fprint(w, "\r\033[K"+line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
