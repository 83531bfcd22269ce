package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/root"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

// The end-to-end tests run the real daemons in-process on loopback:
// exchange simulator -> root -> children -> clients, and check what every
// client got against what the simulator sent.

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startExchange(t testing.TB, rate int, symbols int, maxSeq uint64, opts ...func(*feed.Config)) *feed.Server {
	t.Helper()
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.MaxSeq, cfg.Seed = "127.0.0.1:0", rate, symbols, maxSeq, 42
	for _, o := range opts {
		o(&cfg)
	}
	cfg.Heartbeat = 200 * time.Millisecond
	cfg.Logger = testLogger()
	ex, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "exchange", ex)
	return ex
}

func newRootConfig(exchange net.Addr) root.Config {
	cfg := root.DefaultConfig()
	cfg.ExchangeAddr, cfg.Addr = exchange.String(), "127.0.0.1:0"
	cfg.RingSize = 1 << 16
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	cfg.Logger = testLogger()
	return cfg
}

func startRoot(t testing.TB, cfg root.Config) (*root.Root, func()) {
	t.Helper()
	r, err := root.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, daemontest.Start(t, "root", r)
}

func startChild(t *testing.T, rootAddr net.Addr, name string, fromSeq uint64, moreRoots ...net.Addr) (*child.Child, func()) {
	t.Helper()
	cfg := child.DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Name, cfg.FromSeq = []string{rootAddr.String()}, "127.0.0.1:0", name, fromSeq
	for _, a := range moreRoots {
		cfg.Roots = append(cfg.Roots, a.String())
	}
	cfg.Loops = 2
	// Correctness, not the slow-consumer policy (child tests cover that):
	// clients under -race read slowly.
	cfg.MaxPending = 256 << 20
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 200*time.Millisecond
	cfg.Logger = testLogger()
	c, err := child.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, daemontest.Start(t, "child "+name, c)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// subscriber is one test client and what it saw of each symbol.
type subscriber struct {
	c     *client.Client
	all   bool   // subscribed to "*"
	allOK uint64 // the seq of "OK SUB *"
	allOn bool   // "OK SUB *" seen
	syms  map[uint32]*symLog
}

type symLog struct {
	ok    bool   // "OK SUB sym seq" seen
	okSeq uint64 // its seq
	seqs  []uint64
	bad   string // first mismatch, if any
}

// read consumes lines until done(s) or the conn fails. Once the end is
// known (ended), a read timeout ends it too: the verification then tells
// whether anything is missing.
func (s *subscriber) read(ex *feed.Server, done func(*subscriber) bool, ended func() bool) error {
	var want wire.Msg
	frames, atTimeout := 0, -1
	for !done(s) {
		ev, err := s.c.Next()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() && ended() {
				if frames == atTimeout { // nothing came since the last deadline
					return nil
				}
				// Still receiving (a "*" client far behind under -race):
				// give it another while.
				atTimeout = frames
				s.c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
				continue
			}
			return err
		}
		frames++
		switch ev.Kind {
		case wire.LineOK:
			verb, sym, seq, err := ev.OK()
			if err != nil || verb != wire.CmdSub {
				return fmt.Errorf("unexpected %q (%v)", ev.Line, err)
			}
			if sym == wire.AllSymbols {
				s.allOK, s.allOn = seq, true
				continue
			}
			code, _ := wire.ParseSymbol([]byte(sym))
			if l := s.syms[code]; l != nil {
				l.ok, l.okSeq = true, seq
			}
		case wire.LineFrame:
			if s.all && !s.allOn {
				continue // part of the image before "OK SUB *"
			}
			l := s.log(ev.Msg.Security)
			if l == nil {
				return fmt.Errorf("frame for unsubscribed symbol: %q", ev.Line)
			}
			if !l.ok {
				continue // part of the image before "OK SUB"
			}
			l.seqs = append(l.seqs, ev.Seq)
			body, ok := ex.Body(ev.Seq)
			if !ok {
				return fmt.Errorf("seq %d not in the exchange history", ev.Seq)
			}
			if _, err := wire.DecodeMsg(body, &want); err != nil {
				return err
			}
			if want != ev.Msg && l.bad == "" {
				l.bad = fmt.Sprintf("seq %d: got %+v, exchange sent %+v", ev.Seq, ev.Msg, want)
			}
		default:
			return fmt.Errorf("unexpected line %q", ev.Line)
		}
	}
	return nil
}

func (s *subscriber) log(code uint32) *symLog {
	if l := s.syms[code]; l != nil {
		return l
	}
	if s.all && s.allOn {
		l := &symLog{ok: true, okSeq: s.allOK}
		s.syms[code] = l
		return l
	}
	return nil
}

// expected returns, per symbol, the seqs the exchange published in (after, max].
func expected(ex *feed.Server, max uint64) map[uint32][]uint64 {
	out := map[uint32][]uint64{}
	for seq := uint64(1); seq <= max; seq++ {
		body, _ := ex.Body(seq)
		code, _ := wire.SecurityOf(body)
		out[code] = append(out[code], seq)
	}
	return out
}

// after returns the seqs in all that are > from.
func after(all []uint64, from uint64) []uint64 {
	for i, s := range all {
		if s > from {
			return all[i:]
		}
	}
	return nil
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEndToEnd: simulator -> root -> 2 children -> 600 clients with mixed
// subscriptions, subscribing while the feed streams. Every client must get
// every update of its symbols after its "OK SUB" seq, in order, no gap, no
// duplicate, and each decoded frame must equal what the exchange sent.
func TestEndToEnd(t *testing.T) {
	const (
		symbols = 300
		maxSeq  = 60_000
		clients = 600
	)
	ex := startExchange(t, 20_000, symbols, maxSeq)
	rt, _ := startRoot(t, newRootConfig(ex.Addr()))
	children := make([]*child.Child, 2)
	for i := range children {
		children[i], _ = startChild(t, rt.Addr(), fmt.Sprintf("c%d", i), 1)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	subs := make([]*subscriber, clients)
	ctx := t.Context()
	for i := range subs {
		c, err := client.Dial(ctx, children[i%2].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s := &subscriber{c: c, syms: map[uint32]*symLog{}}
		var names []string
		switch {
		case i%100 == 0: // a few take everything
			s.all = true
			names = []string{wire.AllSymbols}
		default: // most take 1-8 symbols, hot ones (low codes) more often
			for range 1 + rng.IntN(8) {
				code := uint32(1 + min(rng.ExpFloat64()*40, symbols-1))
				if s.syms[code] == nil {
					s.syms[code] = &symLog{}
					names = append(names, string(wire.AppendSymbol(nil, code)))
				}
			}
		}
		if err := c.Sub(names...); err != nil {
			t.Fatal(err)
		}
		subs[i] = s
	}

	// Read while the feed streams: a client that stopped reading would be
	// disconnected as slow, as it should be.
	var wantp atomic.Pointer[map[uint32][]uint64]
	complete := func(s *subscriber) bool {
		p := wantp.Load()
		if p == nil {
			return false
		}
		want := *p
		if s.all {
			if !s.allOn {
				return false
			}
			for code, w := range want {
				if w[len(w)-1] > s.allOK && s.syms[code] == nil {
					return false
				}
			}
		}
		for code, l := range s.syms {
			w := want[code]
			if !l.ok || (len(w) > 0 && w[len(w)-1] > l.okSeq && (len(l.seqs) == 0 || l.seqs[len(l.seqs)-1] < w[len(w)-1])) {
				return false
			}
		}
		return true
	}
	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, s := range subs {
		s.c.Conn().SetReadDeadline(time.Now().Add(90 * time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.read(ex, complete, func() bool { return wantp.Load() != nil })
		}()
	}

	waitFor(t, "children to write the last seq to their clients", 60*time.Second, func() bool {
		return ex.Published() == maxSeq && children[0].FlushedSeq() == maxSeq && children[1].FlushedSeq() == maxSeq
	})
	want := expected(ex, maxSeq)
	wantp.Store(&want)
	// Whoever has everything already stops at this deadline.
	for _, s := range subs {
		s.c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	wg.Wait()

	frames := 0
	for i, s := range subs {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if s.all {
			for code, w := range want { // a symbol with updates after OK must have been seen
				if w[len(w)-1] > s.allOK && s.syms[code] == nil {
					t.Fatalf("client %d (*): nothing of symbol %d", i, code)
				}
			}
		}
		for code, l := range s.syms {
			if l.bad != "" {
				t.Fatalf("client %d symbol %d: content differs: %s", i, code, l.bad)
			}
			if w := after(want[code], l.okSeq); !equalSeqs(l.seqs, w) {
				t.Fatalf("client %d symbol %d (OK seq %d): got %d seqs, want %d (first got %v, want %v)",
					i, code, l.okSeq, len(l.seqs), len(w), head(l.seqs), head(w))
			}
			frames += len(l.seqs)
		}
	}
	t.Logf("%d clients verified %d frames", len(subs), frames)
	if frames < maxSeq {
		t.Fatalf("only %d frames checked: the clients subscribed too late to test live delivery", frames)
	}
}

func head(s []uint64) []uint64 { return s[:min(len(s), 5)] }

// resumer is a client that takes every symbol and, whenever its child goes
// away, reconnects to the current child with RESUME last+1.
type resumer struct {
	last  uint64 // last seq received
	conns int    // connections made
	quiet int    // reconnects after 10 s without a line
	where []string
	dupes int
	gaps  []string
	bad   string
}

// history is whoever holds the bytes the exchange sent (the simulator).
type history interface {
	Body(seq uint64) ([]byte, bool)
}

// run reads until it has seq max; addr gives the child to (re)connect to.
func (r *resumer) run(ctx context.Context, ex history, addr func() string, max uint64) error {
	var want wire.Msg
	for r.last < max {
		c, err := client.Dial(ctx, addr())
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		r.conns++
		if err := c.Resume(r.last+1, wire.AllSymbols); err != nil {
			c.Close()
			continue
		}
		for r.last < max {
			// The feed never pauses for 10 s here: a silent conn is a dead
			// one (e.g. accepted just as its child shut down), as a real
			// client would judge it.
			c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
			ev, err := c.Next()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					r.where = append(r.where, fmt.Sprintf("%s at %d", c.Conn().RemoteAddr(), r.last))
					if r.quiet++; r.quiet > 3 {
						c.Close()
						return fmt.Errorf("stalled at seq %d on %s after %d connections: %w", r.last, c.Conn().RemoteAddr(), r.conns, err)
					}
				}
				break // the child went away: reconnect
			}
			switch ev.Kind {
			case wire.LineFrame:
				switch {
				case ev.Seq <= r.last:
					r.dupes++
					continue
				case ev.Seq != r.last+1:
					r.gaps = append(r.gaps, fmt.Sprintf("%d..%d", r.last+1, ev.Seq-1))
				}
				r.last = ev.Seq
				body, _ := ex.Body(ev.Seq)
				if _, err := wire.DecodeMsg(body, &want); err != nil || want != ev.Msg {
					if r.bad == "" {
						r.bad = fmt.Sprintf("seq %d: got %+v, exchange sent %+v (%v)", ev.Seq, ev.Msg, want, err)
					}
				}
			case wire.LineErr:
				if code, _ := ev.Err(); code == wire.ErrCodeShutdown {
					continue // EOF follows
				}
				c.Close()
				return fmt.Errorf("at seq %d: %s", r.last, ev.Line)
			}
		}
		c.Close()
	}
	return nil
}

// TestEndToEndResume: the exchange drops the root's session several times
// and one child is restarted mid-stream; clients of the restarted child
// reconnect to its successor with RESUME last+1. Every client must end with
// every seq exactly once, in order, equal to what the exchange sent.
func TestEndToEndResume(t *testing.T) {
	const maxSeq = 40_000
	ex := startExchange(t, 20_000, 100, maxSeq)
	jpath := filepath.Join(t.TempDir(), "root.journal")
	openJournal := func() *journal.Journal {
		j, err := journal.Open(jpath, journal.Options{SyncPolicy: journal.SyncNone, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	j := openJournal()
	rcfg := newRootConfig(ex.Addr())
	rcfg.Store = j
	rt, stopRoot := startRoot(t, rcfg)
	childA, stopA := startChild(t, rt.Addr(), "a", 1)
	childB, _ := startChild(t, rt.Addr(), "b", 1)
	var addrA atomic.Pointer[string]
	a := childA.Addr().String()
	addrA.Store(&a)
	b := childB.Addr().String()

	resumers := make([]*resumer, 24)
	errs := make([]error, len(resumers))
	var wg sync.WaitGroup
	for i := range resumers {
		resumers[i] = &resumer{}
		addr := func() string { return *addrA.Load() }
		if i%3 == 0 {
			addr = func() string { return b }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = resumers[i].run(t.Context(), ex, addr, maxSeq)
		}()
	}

	// Pause the exchange at ~23000 whatever the root's pace (it publishes
	// on its own clock; under -race the root lags far behind).
	paused := make(chan struct{})
	go func() {
		defer close(paused)
		for ex.Published() < 23_000 {
			time.Sleep(200 * time.Microsecond)
		}
		ex.Pause()
	}()
	for _, at := range []uint64{8_000, 14_000, 20_000} {
		waitFor(t, fmt.Sprintf("root at seq %d", at), 30*time.Second, func() bool { return rt.Head() >= at })
		ex.DropConnections()
	}
	// The root restarts on the same address and journal: both children
	// reconnect and ask for their last seq + 1; their clients see nothing
	// of it but a pause.
	// The feed holds still from seq ~23000 (see paused) until child a has
	// gone, so no client of a can have finished before it goes.
	<-paused
	held := ex.Published()
	waitFor(t, fmt.Sprintf("root at seq %d", held), 30*time.Second, func() bool { return rt.Head() >= held })
	stopRoot()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openJournal()
	t.Cleanup(func() { j.Close() })
	rcfg.Store, rcfg.Addr = j, rt.Addr().String()
	rt, _ = startRoot(t, rcfg)

	waitFor(t, fmt.Sprintf("child a at seq %d", held), 30*time.Second, func() bool { return childA.LastSeq() >= held })
	// A successor comes up, then the old child goes: its clients find
	// the new one and resume where they were.
	childA2, _ := startChild(t, rt.Addr(), "a2", 1)
	a2 := childA2.Addr().String()
	addrA.Store(&a2)
	stopA()
	ex.Resume()

	wg.Wait()
	if n := testutil.ToFloat64(childB.Metrics().Reconnects); n < 1 {
		t.Errorf("child b never reconnected to the restarted root (%v reconnects)", n)
	}
	t.Logf("children: a %s last %d, a2 %s last %d, b %s last %d", a, childA.LastSeq(), a2, childA2.LastSeq(), b, childB.LastSeq())
	for i, r := range resumers {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if r.last != maxSeq || r.dupes != 0 || len(r.gaps) != 0 || r.bad != "" {
			t.Fatalf("client %d: last %d (want %d), %d duplicates, gaps %v, content: %s", i, r.last, maxSeq, r.dupes, r.gaps, r.bad)
		}
		if r.quiet > 0 {
			t.Logf("client %d: %d reconnect(s) after a silent connection: %v", i, r.quiet, r.where)
		}
		if i%3 != 0 && r.conns < 2 {
			t.Fatalf("client %d of the restarted child connected only %d time(s)", i, r.conns)
		}
	}
}

// TestEndToEndABRoots: two roots take the same exchange feed and one child
// has a relay line to each. Root A stops mid-stream and comes back (empty:
// it re-reads the feed from the exchange), then root B stops for good.
// Every client must get every seq exactly once, in order, equal to what the
// exchange sent, without reconnecting: the failovers are the child's.
func TestEndToEndABRoots(t *testing.T) {
	const maxSeq = 40_000
	ex := startExchange(t, 20_000, 100, maxSeq)
	acfg, bcfg := newRootConfig(ex.Addr()), newRootConfig(ex.Addr())
	rootA, stopA := startRoot(t, acfg)
	rootB, stopB := startRoot(t, bcfg)
	ch, _ := startChild(t, rootA.Addr(), "ab", 1, rootB.Addr())
	addr := ch.Addr().String()

	resumers := make([]*resumer, 8)
	errs := make([]error, len(resumers))
	var wg sync.WaitGroup
	for i := range resumers {
		resumers[i] = &resumer{}
		wg.Go(func() { errs[i] = resumers[i].run(t.Context(), ex, func() string { return addr }, maxSeq) })
	}

	waitFor(t, "child at seq 10000", 30*time.Second, func() bool { return ch.LastSeq() >= 10_000 })
	stopA()
	waitFor(t, "child at seq 20000 on root B alone", 30*time.Second, func() bool { return ch.LastSeq() >= 20_000 })
	acfg.Addr = rootA.Addr().String()
	rootA, _ = startRoot(t, acfg)
	waitFor(t, "restarted root A past the child", 30*time.Second, func() bool { return rootA.Head() >= ch.LastSeq() })
	stopB()
	wg.Wait()

	m := ch.Metrics()
	t.Logf("child: last %d, %v duplicates, %v reconnects", ch.LastSeq(), testutil.ToFloat64(m.Duplicates), testutil.ToFloat64(m.Reconnects))
	if g, l := testutil.ToFloat64(m.Gaps), testutil.ToFloat64(m.LostItems); g != 0 || l != 0 {
		t.Fatalf("child: %v gaps, %v lost items", g, l)
	}
	if testutil.ToFloat64(m.Duplicates) == 0 {
		t.Fatal("no duplicates: the two lines never both delivered")
	}
	for i, r := range resumers {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		if r.last != maxSeq || r.dupes != 0 || len(r.gaps) != 0 || r.bad != "" || r.conns != 1 {
			t.Fatalf("client %d: last %d (want %d), %d duplicates, gaps %v, %d connections, content: %s", i, r.last, maxSeq, r.dupes, r.gaps, r.conns, r.bad)
		}
	}
}
