package child

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"tickrelay/alert"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/frames"
	"tickrelay/child/session"
	"tickrelay/control"
	"tickrelay/internal/bound"
	"tickrelay/internal/gnetlog"
	"tickrelay/latency"
	"tickrelay/wire"
)

// Child is the child daemon: a relay line to each root (arbitrated by seq,
// arbiter.go), the parse-once core, and the client fan-out server on gnet.
type Child struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	writes  string // the client write path the loops take (writes.go)

	// state is the parse-once core: a relay line writes (under relayMu),
	// loops read snapshots.
	state *frames.Shared

	offset atomic.Int64 // clock offset estimate (root - child) of the active line, ns
	bound  atomic.Int64 // its error bound, ns; -1 before any sample

	lines  []*line
	active atomic.Pointer[line] // the line whose items were published last

	// relayMu serializes the relay lines: one applies frames at a time,
	// and the fields below are theirs.
	relayMu   sync.Mutex
	arb       *arbiter
	badSeen   uint64
	bad       uint64        // the core's Bad count after the last write
	stamps    []wire.Stamps // the items of the open batch, for hops
	open      *frames.Batch // being filled
	openLine  *line         // the line filling open
	openItems int
	groups    *control.Groups // the control stream's replica (control.go)
	snapIn    snapshotIn      // a control snapshot coming in parts
	// alerts is the alert replica: the relay lines write it (under
	// relayMu, then alertsMu), the loops read it under alertsMu.
	alertsMu sync.RWMutex
	alerts   *alert.Set

	// hops: shard 0 is the relay lines' (exch->root, root->child),
	// shard i+1 event loop i's (child hop).
	hops *latency.Recorder

	srv       *server
	dir       dirUnion      // the child directory (directory.go)
	published atomic.Uint64 // Last of the last batch published
	// Listener: Ready is closed once the client listener is bound; Addr
	// is its address.
	*bound.Listener
	running atomic.Bool
	// drain.go
	drainOnce sync.Once
	draining  atomic.Bool
	drainNow  chan struct{} // closed when the drain starts
	admit     *admission    // admission.go
	ents      entitlements  // entitle.go
}

// New validates cfg and returns a Child; it binds nothing yet.
func New(cfg Config) (*Child, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ch := &Child{
		cfg:      cfg,
		log:      cfg.Logger.With("child", cfg.Name),
		metrics:  newMetrics(cfg.Registerer, cfg.Name),
		state:    frames.NewShared(frames.NewCore(cfg.HistorySize, cfg.HistoryBytes)),
		Listener: bound.New(),
		hops:     latency.NewRecorder(cfg.Loops + 1),
		drainNow: make(chan struct{}),
		groups:   control.NewGroups(),
		alerts:   alert.NewSet(false, control.FiresKept),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(latency.NewCollector("tickrelay_child", ch.hops.Merged, nil, latency.HopExchRoot, latency.HopRoot, latency.HopRootChild, latency.HopChild),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "tickrelay", Subsystem: "child", Name: "flushed_seq",
				Help:        "Last seq every event loop has written to its clients (last_seq minus this is the fan-out backlog).",
				ConstLabels: prometheus.Labels{"child": cfg.Name}}, func() float64 { return float64(ch.FlushedSeq()) }))
	}
	ch.state.Write(func(c *frames.Core) { c.Skip(cfg.FromSeq - 1) })
	ch.bound.Store(-1)
	// A line that went down is back, or has failed to come back, within a
	// backoff, a dial and an idle timeout: the longest its drop holds the
	// others' skips back.
	ch.arb = newArbiter(len(cfg.Roots), cfg.BackoffMin+cfg.DialTimeout+cfg.IdleTimeout)
	for i, addr := range cfg.Roots {
		l := &line{i: i, addr: addr, up: ch.metrics.RootUp.WithLabelValues(addr), items: ch.metrics.RootItems.WithLabelValues(addr)}
		l.bound.Store(-1)
		ch.lines = append(ch.lines, l)
	}
	ch.admit = newAdmission(cfg, time.Now().UnixNano())
	if err := ch.ents.load(cfg.Entitlements); err != nil {
		return nil, err
	}
	path, why, err := writePath(cfg.Writes)
	if err != nil {
		return nil, err
	}
	ch.writes = path
	ch.metrics.WritePath.WithLabelValues(path).Set(1)
	if why != nil {
		ch.log.Info("client writes: write(2), io_uring is not available", "writes", cfg.Writes, "reason", why)
	} else {
		ch.log.Info("client writes", "path", path)
	}
	ch.srv = newServer(ch)
	return ch, nil
}

// LastSeq is the last seq received from the roots (FromSeq-1 before any).
func (ch *Child) LastSeq() uint64 { return ch.state.LastSeq() }

// Epoch is the exchange epoch of the items received (0 before any).
func (ch *Child) Epoch() uint32 { return ch.state.Epoch() }

// FlushedSeq is the last seq every event loop has handed to its clients'
// sockets (LastSeq when no loop serves anyone yet). LastSeq - FlushedSeq is
// the fan-out backlog: at most a full loop queue of batches.
func (ch *Child) FlushedSeq() uint64 {
	loops := *ch.srv.loops.Load()
	if len(loops) == 0 {
		return ch.LastSeq()
	}
	seq := loops[0].flushed.Load()
	for _, l := range loops[1:] {
		seq = min(seq, l.flushed.Load())
	}
	return seq
}

// ClockOffset returns the estimated root clock minus child clock and its
// error bound (ns), for the root whose items the child published last (the
// first to answer, before any); ok is false before the first TimeReply.
func (ch *Child) ClockOffset() (offset, bound int64, ok bool) {
	b := ch.bound.Load()
	return ch.offset.Load(), b, b >= 0
}

// Hops returns a copy of the per-hop latency histograms the child has
// recorded: exch->root and root->child (corrected with the clock offset
// estimate) once per item, the child hop once per frame and event loop.
func (ch *Child) Hops() *latency.Hops { return ch.hops.Merged() }

// sessionConfig is the loops' client policy.
func (ch *Child) sessionConfig() session.Config {
	cfg := session.Config{MaxPending: ch.cfg.MaxPending, Conflate: ch.cfg.SlowPolicy == SlowConflate,
		SlowTimeout: ch.cfg.SlowTimeout, SlowLinger: ch.cfg.SlowLinger, MaxCommandsPerSec: ch.cfg.MaxCommandsPerSec, Log: ch.log,
		CmdRate: ch.cfg.CmdRate, CmdBurst: ch.cfg.CmdBurst, MaxSubs: ch.cfg.MaxSubs, AuthTimeout: ch.cfg.AuthTimeout}
	if ch.cfg.Entitlements != "" {
		cfg.Entitlements = ch.ents.table.Load
	}
	return cfg
}

// Metrics returns the child's metrics.
func (ch *Child) Metrics() *Metrics { return ch.metrics }

// Run binds the client listener, runs a relay line per root and serves clients
// until ctx ends; then it stops reading the roots, flushes what is queued,
// sends ERR SHUTDOWN to every client and stops the engine. It runs once.
func (ch *Child) Run(ctx context.Context) error {
	if !ch.running.CompareAndSwap(false, true) {
		return errors.New("child: Run called twice")
	}
	engErr := make(chan error, 1)
	go func() {
		err := gnet.Run(ch.srv, "tcp://"+ch.cfg.Addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(ch.cfg.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithSocketSendBuffer(ch.cfg.ClientSendBuffer), // 0: the kernel's
			gnet.WithTicker(true),                              // OnTick: catch-ups, resyncs and closes on a quiet feed
			gnet.WithLogger(gnetlog.Logger{L: ch.log}))
		close(ch.srv.stopped) // no loop drains any more: publish must not wait
		ch.srv.closeRings()
		engErr <- err
	}()
	select {
	case <-ch.srv.boot:
	case err := <-engErr:
		return fmt.Errorf("child: listen %s: %w", ch.cfg.Addr, err)
	case <-ctx.Done():
		// Wait for the boot (or failure) so the engine is never left running.
		select {
		case <-ch.srv.boot:
		case err := <-engErr:
			return fmt.Errorf("child: listen %s: %w", ch.cfg.Addr, err)
		}
	}
	ch.Publish(ch.srv.addr)
	ch.log.Info("child listening", "addr", ch.srv.addr.String(), "roots", ch.cfg.Roots, "loops", ch.cfg.Loops)

	// The relay outlives ctx by the drain: draining clients still get frames.
	relayCtx, cancelRelay := context.WithCancel(context.WithoutCancel(ctx))
	if t := ch.ents.table.Load(); t != nil {
		ch.metrics.EntitlementTokens.Set(float64(t.Len()))
		go ch.watchEntitlements(ctx, time.Second)
	}
	var relays sync.WaitGroup
	for _, l := range ch.lines {
		relays.Go(func() { ch.relayLoop(relayCtx, l) })
	}

	var err error
	select {
	case <-ctx.Done():
		if ch.cfg.DrainGrace > 0 {
			ch.Drain(context.Background(), ch.cfg.DrainGrace)
		}
	case err = <-engErr:
		err = fmt.Errorf("child: client engine stopped: %w", err)
		engErr <- nil
	}
	cancelRelay()
	relays.Wait()

	// Drain: every loop flushes its queue and closes its clients.
	ch.shutdownLoops()
	stopCtx, cancel := context.WithTimeout(context.Background(), ch.cfg.DrainTimeout)
	defer cancel()
	if e := ch.srv.eng.Stop(stopCtx); e != nil && err == nil {
		ch.log.Warn("engine stop", "err", e)
	}
	select {
	case e := <-engErr:
		if e != nil && err == nil {
			err = e
		}
	case <-stopCtx.Done():
		if err == nil {
			err = errors.New("child: engine did not stop in time")
		}
	}
	ch.log.Info("child stopped", "last_seq", ch.LastSeq())
	return err
}

func (ch *Child) shutdownLoops() {
	ch.srv.closing.Store(true)
	loops := *ch.srv.loops.Load()
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			l.shutdown()
			return nil
		}))
		if err != nil {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ch.cfg.DrainTimeout):
		ch.log.Warn("loops did not drain in time")
	}
}

// LoopsAlive reports whether every event loop runs a task within d: a loop
// stuck in a callback stops the systemd watchdog.
func (ch *Child) LoopsAlive(d time.Duration) bool {
	loops := *ch.srv.loops.Load()
	done := make(chan struct{}, len(loops))
	for _, l := range loops {
		if l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { done <- struct{}{}; return nil })) != nil {
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for range loops {
		select {
		case <-done:
		case <-t.C:
			return false
		}
	}
	return true
}
