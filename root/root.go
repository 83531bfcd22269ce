// Package root is the root daemon: it keeps one session to the exchange
// feed, holds every item in a sequence-indexed ring (with an optional
// durable Store beneath it), and relays the items to child daemons over gnet,
// each child being a cursor into the ring.
//
// Data path:
//
//	exchange --feed frames--> session goroutine --Append--> Store (optional)
//	                                            --Append--> Ring --signal--> gnet loops --batches--> children
//
// The session goroutine is the only ring writer; gnet loops read the ring
// under its read lock (see Ring). See relay for the drain scheme.
//
// Exchange session: dial (DialTimeout), Logon from last+1, LogonReply
// checked, then frames are read into one reusable buffer, decoded with
// wire.NextFeedFrame/ParseFeedBody and stamped with one rootRecv per read.
// A seq <= last is a duplicate and ignored; a seq > last+1 (or a heartbeat
// announcing one) is a gap: the session is dropped and logs in again from
// last+1. Malformed input of any kind, an idle line (IdleTimeout) or a
// connection closed mid-frame also drop the session (logged, counted in
// tickrelay_root_bad_input_total); reconnects back off exponentially with
// jitter. Items already accepted are never lost: they are in the ring (and
// the Store) before anything else happens.
//
// Children: Hello{FromSeq} (0 = from the live edge, head+1) starts a cursor.
// FromSeq > head+1 gets Error SeqFuture (seq = head); FromSeq older than
// the ring is served from the Store if there is one (off the loop, then
// handed back to the ring path), else gets Error SeqGone (seq = oldest held).
// A child whose cursor the ring overwrites while it lags is treated the same
// way. TimeReq gets TimeReply(t0, t1 = receive, t2 = send). A malformed or
// oversized frame (> 4 KiB) gets Error BadFrame and only that child closes.
//
// Locks: Ring.mu, relay.mu (loop registry, OnOpen only) and
// Root.storeErrMu (log rate limit) are never held together.
package root

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/internal/bound"
	"tickrelay/latency"
	"tickrelay/wire"
)

// Root is the root daemon.
type Root struct {
	// progress is when the feed session last moved (a read returned, a
	// dial began) or, in a backoff, when it will: Stalled reads it.
	progress atomic.Int64
	cfg      Config
	log      *slog.Logger
	m        *Metrics
	ring     *Ring
	relay    *relay
	now      func() int64
	// hops: shard 0 is the exchange session's (exch->root), shard i+1
	// relay loop i's (root).
	hops *latency.Recorder

	// Listener: Ready is closed once the relay listener is bound; Addr
	// is its address.
	*bound.Listener
	started atomic.Bool

	// ends holds the last position of each epoch the exchange closed while
	// this process ran: a child crossing it is told where it ended.
	endsMu sync.Mutex
	ends   map[uint32]uint64

	storeErrMu   sync.Mutex
	storeErrLast time.Time
	storeErrN    int
}

// New validates cfg and builds a Root; it binds nothing yet.
func New(cfg Config) (*Root, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = func() int64 { return time.Now().UnixNano() }
	}
	ring, err := NewRing(cfg.RingSize)
	if err != nil {
		return nil, err
	}
	r := &Root{cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registerer), ring: ring, now: cfg.Now, Listener: bound.New(),
		hops: latency.NewRecorder(1 + cfg.RelayLoops())}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(latency.NewCollector("tickrelay_root", r.hops.Merged, nil, latency.HopExchRoot, latency.HopRoot))
	}
	r.relay = newRelay(r)
	return r, nil
}

// Stalled reports whether the feed session has not moved for d: hung (a
// live one returns from every read within IdleTimeout, and retries within
// its backoff). The systemd watchdog stops on it.
func (r *Root) Stalled(d time.Duration) bool {
	return time.Since(time.Unix(0, r.progress.Load())) > d
}

// Head returns the last seq received (0 before any).
func (r *Root) Head() uint64 { return wire.PosSeq(r.ring.Head()) }

// Epoch is the exchange epoch the root is in (0 before any).
func (r *Root) Epoch() uint32 { return wire.PosEpoch(r.ring.Head()) }

// Ring returns the root's ring (read-only use: Get, First, Head).
func (r *Root) Ring() *Ring { return r.ring }

// Hops returns a copy of the latency histograms the root records:
// exch->root once per item received, root (RootSend - RootRecv) once per
// item and child it is sent to from the ring.
func (r *Root) Hops() *latency.Hops { return r.hops.Merged() }

// Metrics returns the root's metrics.
func (r *Root) Metrics() *Metrics { return r.m }

// Run refills the ring from the Store, binds the relay, keeps the exchange
// session and serves children until ctx ends; then it stops the session,
// flushes every child to the head (bounded by DrainTimeout), says goodbye
// (Error Shutdown) and stops the engine. It may be called once.
func (r *Root) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("root: Run called twice")
	}
	if err := r.refill(); err != nil {
		return err
	}
	if err := r.restoreAlerts(); err != nil {
		// The feed must go on: the alerts of the journal are lost, loudly.
		r.log.Error("alerts not restored from the journal; the engine starts empty", "err", err)
	}
	errc := make(chan error, 1)
	if err := r.relay.start(errc); err != nil {
		return err
	}
	r.log.Info("relay listening", "addr", r.relay.addr.String(), "ring_size", r.ring.Size(), "epoch", r.Epoch(), "head", r.Head())
	r.Publish(r.relay.addr)

	sctx, stopSession := context.WithCancel(ctx)
	sess := newSession(r)
	done := make(chan struct{})
	go func() { defer close(done); sess.run(sctx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("root: relay engine stopped: %w", err)
		errc <- err // for the drain below
	}
	stopSession()
	<-done
	r.log.Info("draining children", "epoch", r.Epoch(), "head", r.Head())
	r.flushChildren()

	stopCtx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout+2*time.Second)
	defer cancel()
	if err := r.relay.eng.Stop(stopCtx); err != nil && runErr == nil {
		r.log.Warn("relay engine stop", "err", err)
	}
	select {
	case <-errc:
	case <-stopCtx.Done():
		r.log.Warn("relay engine did not stop in time")
	}
	close(r.relay.stopped)
	r.relay.wg.Wait()
	r.log.Info("root stopped", "epoch", r.Epoch(), "head", r.Head())
	return runErr
}

// flushChildren asks every loop to send its children everything up to the
// head and a Shutdown frame, and waits (at most DrainTimeout) until their
// outbound buffers are empty.
func (r *Root) flushChildren() {
	r.relay.drain.Store(true)
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for time.Now().Before(deadline) {
		r.relay.signalAll()
		time.Sleep(20 * time.Millisecond)
		all := true
		for _, l := range *r.relay.loops.Load() {
			all = all && l.flushed.Load()
		}
		if all {
			return
		}
	}
	r.log.Warn("children not flushed before the drain timeout", "timeout", r.cfg.DrainTimeout)
}

// refill loads the newest RingSize items from the Store into the ring, so
// that the session resumes at the Store's last seq + 1.
func (r *Root) refill() error {
	st := r.cfg.Store
	if st == nil {
		return nil
	}
	last := st.LastSeq()
	if last == 0 {
		return nil
	}
	from := wire.Pos(wire.PosEpoch(last), 1) // the ring holds one epoch
	if size := uint64(r.ring.Size()); last >= size {
		from = max(from, last-size+1)
	}
	var aerr error
	n := 0
	err := st.Range(from, func(seq uint64, item []byte) bool {
		if h := r.ring.Head(); h != 0 && seq > h+1 {
			// The store's retention dropped the items after h while we
			// read them: the ring starts over from what is left.
			r.log.Info("store retention dropped items during refill; the ring starts over", "after", h, "from", seq)
			r.ring.Reset(seq)
			n = 0
		}
		if aerr = r.ring.AppendItem(seq, item); aerr != nil {
			return false
		}
		n++
		return true
	})
	if err == nil {
		err = aerr
	}
	if err != nil {
		return fmt.Errorf("root: refill ring from store: %w", err)
	}
	if h := r.ring.Head(); h < last {
		return fmt.Errorf("root: refill ring from store: store says last seq %d but Range ended at %d", last, h)
	}
	first, head := r.ring.Bounds()
	r.showRing(first, head)
	r.log.Info("ring refilled from store", "items", n, "epoch", wire.PosEpoch(head), "first", wire.PosSeq(first), "head", wire.PosSeq(head))
	return nil
}

// showRing sets the ring gauges from its bounds (positions).
func (r *Root) showRing(first, head uint64) {
	r.m.RingHead.Set(float64(wire.PosSeq(head)))
	r.m.RingFirst.Set(float64(wire.PosSeq(first)))
	r.m.Epoch.Set(float64(wire.PosEpoch(head)))
}

// endEpoch records that the epoch of last ended there.
func (r *Root) endEpoch(last uint64) {
	r.endsMu.Lock()
	defer r.endsMu.Unlock()
	if r.ends == nil {
		r.ends = map[uint32]uint64{}
	}
	r.ends[wire.PosEpoch(last)] = last
}

// crossing is the Reset that takes a child whose next position is from,
// in an epoch the root no longer streams, on to next (of a later epoch):
// its old epoch ended at the end recorded, else just before from.
func (r *Root) crossing(from, next uint64) wire.Reset {
	r.endsMu.Lock()
	last, ok := r.ends[wire.PosEpoch(from)]
	r.endsMu.Unlock()
	if !ok || last < from-1 {
		last = from - 1
	}
	return wire.Reset{Epoch: wire.PosEpoch(next), Seq: wire.PosSeq(next), Prev: wire.PosEpoch(from), PrevLast: wire.PosSeq(last)}
}

// storeFailed logs a Store append failure, at most once a second.
func (r *Root) storeFailed(seq uint64, err error) {
	r.m.StoreErrors.Inc()
	r.storeErrMu.Lock()
	defer r.storeErrMu.Unlock()
	r.storeErrN++
	if time.Since(r.storeErrLast) < time.Second {
		return
	}
	r.log.Error("store append failed; relaying anyway, the store catches up from the ring when it recovers", "epoch", wire.PosEpoch(seq), "seq", wire.PosSeq(seq), "err", err, "failures", r.storeErrN)
	r.storeErrLast, r.storeErrN = time.Now(), 0
}
