package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tickrelay/child/client"
	"tickrelay/child/cluster"
	"tickrelay/feed"
	"tickrelay/root"
	"tickrelay/wire"
)

// clusterReader is one cluster client under test and what it delivered.
type clusterReader struct {
	cl   *cluster.Client
	syms []string

	mu     sync.Mutex
	on     string            // the child it is on
	okSeq  map[uint32]uint64 // OK SUB seq per symbol
	seqs   map[uint32][]uint64
	moves  []cluster.Move
	resume []time.Time // the first frame after each move
	owe    bool        // a move happened and no frame came since
	err    error
}

func dialReader(t testing.TB, ctx context.Context, cfg cluster.Config, syms ...string) *clusterReader {
	t.Helper()
	r := &clusterReader{syms: syms, okSeq: map[uint32]uint64{}, seqs: map[uint32][]uint64{}}
	cfg.OnMove = func(m cluster.Move) {
		r.mu.Lock()
		r.moves, r.on, r.owe = append(r.moves, m), m.To, true
		r.mu.Unlock()
	}
	cl, err := cluster.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.cl, r.on = cl, cl.Child().Addr
	if err := cl.Sub(syms...); err != nil {
		t.Fatal(err)
	}
	return r
}

// readersUp dials n cluster readers (reader i with the config and
// symbols mk gives), runs them until ctx ends, and waits until every one
// is subscribed; wait waits for them to end.
func readersUp(t testing.TB, ctx context.Context, n int, timeout time.Duration, mk func(i int) (cluster.Config, []string)) (readers []*clusterReader, wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		cfg, syms := mk(i)
		r := dialReader(t, ctx, cfg, syms...)
		readers = append(readers, r)
		wg.Go(func() { r.run(ctx) })
	}
	waitFor(t, "every client subscribed", timeout, func() bool {
		for _, r := range readers {
			if !r.subscribed() {
				return false
			}
		}
		return true
	})
	return readers, wg.Wait
}

// run reads until ctx ends, recording frames after each symbol's OK SUB.
func (r *clusterReader) run(ctx context.Context) {
	go func() { <-ctx.Done(); r.cl.Close() }()
	for {
		ev, err := r.cl.Next(ctx)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
			}
			return
		}
		r.mu.Lock()
		switch ev.Kind {
		case wire.LineOK:
			if verb, sym, seq, err := ev.OK(); err == nil && verb == wire.CmdSub {
				code, _ := wire.ParseSymbol([]byte(sym))
				r.okSeq[code] = seq
			}
		case wire.LineFrame:
			if _, ok := r.okSeq[ev.Msg.Security]; ok {
				r.seqs[ev.Msg.Security] = append(r.seqs[ev.Msg.Security], ev.Seq)
				if r.owe {
					r.resume, r.owe = append(r.resume, time.Unix(0, ev.Recv)), false
				}
			}
		case wire.LineErr:
			r.err = fmt.Errorf("%s", ev.Line)
		}
		r.mu.Unlock()
	}
}

func (r *clusterReader) child() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on
}

func (r *clusterReader) subscribed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.okSeq) == len(r.syms)
}

// movesSince returns the moves at or after t.
func (r *clusterReader) movesSince(t time.Time) []cluster.Move {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []cluster.Move
	for _, m := range r.moves {
		if !m.At.Before(t) {
			out = append(out, m)
		}
	}
	return out
}

// firstFrameAfter is the first frame's arrival after a move at or after t.
func (r *clusterReader) firstFrameAfter(t time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.resume {
		if !at.Before(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// caughtUp reports whether r has every update of its symbols up to head.
func (r *clusterReader) caughtUp(want map[uint32][]uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.syms {
		code, _ := wire.ParseSymbol([]byte(s))
		w := want[code]
		if len(w) == 0 {
			continue
		}
		got := r.seqs[code]
		if len(got) == 0 && w[len(w)-1] > r.okSeq[code] || len(got) > 0 && got[len(got)-1] < w[len(w)-1] {
			return false
		}
	}
	return true
}

// check compares what r delivered of each symbol, up to the last seq in
// want, with want (the exchange's seqs, or a reference client's) after
// its OK SUB: no gap, no duplicate.
func (r *clusterReader) check(want map[uint32][]uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	for _, s := range r.syms {
		code, _ := wire.ParseSymbol([]byte(s))
		ok, seen := r.okSeq[code]
		if !seen {
			return fmt.Errorf("no OK SUB %s", s)
		}
		w := after(want[code], ok)
		var last uint64
		if len(want[code]) > 0 {
			last = want[code][len(want[code])-1]
		}
		got := r.seqs[code]
		for len(got) > 0 && got[len(got)-1] > last {
			got = got[:len(got)-1]
		}
		if !equalSeqs(got, w) {
			return fmt.Errorf("symbol %s after OK SUB %d: got %d seqs %v..., want %d %v...; moves %+v", s, ok, len(got), head(got), len(w), head(w), r.moves)
		}
	}
	return nil
}

// refSeqs reads a "SUB *" reference client's seqs per symbol from c until
// stop, in a goroutine; the map is complete once done is closed.
func refSeqs(t *testing.T, addr string, stop <-chan struct{}) (map[uint32][]uint64, *uint64, <-chan struct{}) {
	t.Helper()
	c, err := client.Dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Sub("*"); err != nil {
		t.Fatal(err)
	}
	out := map[uint32][]uint64{}
	var okSeq uint64
	done := make(chan struct{})
	go func() {
		<-stop
		c.Conn().SetReadDeadline(time.Now().Add(time.Second))
	}()
	go func() {
		defer close(done)
		on := false
		for {
			ev, err := c.Next()
			if err != nil {
				return
			}
			switch ev.Kind {
			case wire.LineOK:
				_, _, okSeq, _ = ev.OK()
				on = true
			case wire.LineFrame:
				if on {
					out[ev.Msg.Security] = append(out[ev.Msg.Security], ev.Seq)
				}
			}
		}
	}()
	return out, &okSeq, done
}

// clusterChild is a child daemon process for the cluster tests.
type clusterChild struct {
	name, addr, admin string
	p                 *proc
}

func startClusterChild(t testing.TB, rootAddr net.Addr, name, addr string, extra ...string) *clusterChild {
	t.Helper()
	c := &clusterChild{name: name, addr: addr, admin: freeAddr(t)}
	args := append([]string{"child", "-root", rootAddr.String(), "-addr", addr, "-admin", c.admin, "-name", name,
		"-loops", "1", "-announce-every", "100ms", "-drain-grace", "5s", "-max-pending", "64MiB", "-log-level", "info"}, extra...)
	c.p = startProc(t, "child "+name, args...)
	c.p.waitLog(t, 10*time.Second, "relay session")
	return c
}

// startClusterTier runs an exchange, a root announcing every 100 ms and
// the named child processes.
func startClusterTier(t testing.TB, rate int, names ...string) (*feed.Server, *root.Root, map[string]*clusterChild) {
	ex := startExchange(t, rate, 30, 0)
	cfg := newRootConfig(ex.Addr())
	cfg.AnnounceEvery = 100 * time.Millisecond
	rt, _ := startRoot(t, cfg)
	kids := map[string]*clusterChild{}
	for _, n := range names {
		kids[n] = startClusterChild(t, rt.Addr(), n, freeAddr(t))
	}
	return ex, rt, kids
}

// waitDirectory waits until the child at addr lists exactly n children up.
func waitDirectory(t testing.TB, addr string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d children in the directory", n), 10*time.Second, func() bool {
		c, err := client.Dial(t.Context(), addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SendLine(wire.CmdChildren)
		c.Conn().SetReadDeadline(time.Now().Add(time.Second))
		for {
			ev, err := c.Next()
			if err != nil {
				return false
			}
			if ev.Kind == wire.LineChildren {
				_, kids, _ := wire.ParseChildrenLine(ev.Line)
				up := 0
				for _, k := range kids {
					if k.State == wire.ChildUp {
						up++
					}
				}
				return up == n
			}
		}
	})
}

// TestClusterFailover: 3 children on one root, 300 sticky cluster clients
// with 3 symbols each. A 4th child joins: 15-35% of the clients move, each
// within the jitter window. One child is SIGKILLed: each of its clients
// resumes on another within 2 s. Another drains (SIGTERM): its clients
// move before it closes. Every client's stream, compared with the
// exchange's and with a "SUB *" reference client's, has no gap and no
// duplicate.
func TestClusterFailover(t *testing.T) {
	const clients, window = 300, 500 * time.Millisecond
	ex, rt, kids := startClusterTier(t, 1000, "a", "b", "c")
	seeds := []string{kids["a"].addr, kids["b"].addr, kids["c"].addr}
	waitDirectory(t, seeds[0], 3)
	stopRef := make(chan struct{})
	ref, refOK, refDone := refSeqs(t, kids["c"].addr, stopRef)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	readers, wait := readersUp(t, ctx, clients, 20*time.Second, func(i int) (cluster.Config, []string) {
		return cluster.Config{Seeds: seeds, ID: "client-" + strconv.Itoa(i), MoveWindow: window,
				Heartbeat: 500 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
			[]string{strconv.Itoa(1 + i%30), strconv.Itoa(1 + (i+7)%30), strconv.Itoa(1 + (i+13)%30)}
	})
	on := func(addr string) []*clusterReader {
		var out []*clusterReader
		for _, r := range readers {
			if r.child() == addr {
				out = append(out, r)
			}
		}
		return out
	}
	for _, n := range []string{"a", "b", "c"} {
		t.Logf("child %s: %d clients", n, len(on(kids[n].addr)))
	}

	// A 4th child joins.
	joined := time.Now()
	kids["d"] = startClusterChild(t, rt.Addr(), "d", freeAddr(t))
	waitDirectory(t, seeds[0], 4)
	seen := time.Now()
	time.Sleep(window + 500*time.Millisecond)
	moved := 0
	for _, r := range readers {
		ms := r.movesSince(joined)
		if len(ms) > 1 {
			t.Fatalf("a client moved %d times after the join: %+v", len(ms), ms)
		}
		if len(ms) == 1 {
			moved++
			m := ms[0]
			if m.Reason != cluster.ReasonSet || m.To != kids["d"].addr || m.At.After(seen.Add(window+200*time.Millisecond)) {
				t.Fatalf("join move %+v (directory seen with d at %v)", m, seen)
			}
		}
	}
	t.Logf("d joined: %d of %d clients moved", moved, clients)
	if moved < clients*15/100 || moved > clients*35/100 {
		t.Fatalf("%d of %d clients moved when d joined, want 15-35%%", moved, clients)
	}

	// SIGKILL a: each of its clients resumes elsewhere within 2 s.
	victims := on(kids["a"].addr)
	killed := time.Now()
	kids["a"].p.kill9(t)
	var worst time.Duration
	waitFor(t, "a's clients resumed", 5*time.Second, func() bool {
		for _, r := range victims {
			if _, ok := r.firstFrameAfter(killed); !ok {
				return false
			}
		}
		return true
	})
	for _, r := range victims {
		at, _ := r.firstFrameAfter(killed)
		worst = max(worst, at.Sub(killed))
		if ms := r.movesSince(killed); len(ms) == 0 || ms[0].Reason != cluster.ReasonDead || ms[0].Seq == 0 {
			t.Fatalf("a's client moves after the kill: %+v", ms)
		}
	}
	t.Logf("a killed: %d clients resumed, the last %v after the kill", len(victims), worst)
	if worst > 2*time.Second {
		t.Fatalf("a's clients took up to %v to resume, want < 2s", worst)
	}

	// Drain b: its clients move before it exits.
	leaving := on(kids["b"].addr)
	drained := time.Now()
	kids["b"].p.signal(syscall.SIGTERM)
	kids["b"].p.waitLog(t, 10*time.Second, "drained: every client left")
	if code := kids["b"].p.exited(t, 10*time.Second); code != 0 {
		t.Fatalf("b exited %d after its drain", code)
	}
	for _, r := range leaving {
		if ms := r.movesSince(drained); len(ms) == 0 || ms[0].Reason != cluster.ReasonDrain || ms[0].Seq == 0 {
			t.Fatalf("b's client moves after the drain: %+v", ms)
		}
	}
	t.Logf("b drained: %d clients moved", len(leaving))

	// Every stream up to the root's head now: exact.
	head := rt.Head()
	want := expected(ex, head)
	waitFor(t, "every client caught up", 20*time.Second, func() bool {
		for _, r := range readers {
			if !r.caughtUp(want) {
				return false
			}
		}
		return true
	})
	close(stopRef)
	<-refDone
	refWant := map[uint32][]uint64{}
	for code, seqs := range want {
		refWant[code] = after(seqs, *refOK)
		if got := ref[code]; len(got) < len(refWant[code]) || !equalSeqs(got[:len(refWant[code])], refWant[code]) {
			t.Fatalf("the reference client's symbol %d differs from the exchange", code)
		}
	}
	for i, r := range readers {
		if err := r.check(want); err != nil {
			t.Fatalf("client %d against the exchange: %v", i, err)
		}
		if err := r.check(refCut(ref, head)); err != nil && r.okSeqMin() >= *refOK {
			t.Fatalf("client %d against the reference client: %v", i, err)
		}
	}
	cancel()
	wait()
}

// refCut is ref with each symbol's seqs up to head.
func refCut(ref map[uint32][]uint64, head uint64) map[uint32][]uint64 {
	out := map[uint32][]uint64{}
	for code, seqs := range ref {
		n := len(seqs)
		for n > 0 && seqs[n-1] > head {
			n--
		}
		out[code] = seqs[:n]
	}
	return out
}

func (r *clusterReader) okSeqMin() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, m := true, uint64(0)
	for _, s := range r.okSeq {
		if first || s < m {
			m, first = s, false
		}
	}
	return m
}

// TestClusterLeastLoaded: 300 least-loaded clients that arrive at once
// spread over 3 children within ±10% of the mean, and stay so.
func TestClusterLeastLoaded(t *testing.T) {
	const clients = 300
	_, _, kids := startClusterTier(t, 200, "a", "b", "c")
	seeds := []string{kids["a"].addr, kids["b"].addr, kids["c"].addr}
	waitDirectory(t, seeds[0], 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var readers []*clusterReader
	var wg sync.WaitGroup
	for i := range clients {
		r := dialReader(t, ctx, cluster.Config{Seeds: seeds, Policy: cluster.LeastLoaded, MoveWindow: 300 * time.Millisecond,
			LoadEvery: 200 * time.Millisecond}, strconv.Itoa(1+i%30))
		readers = append(readers, r)
		wg.Go(func() { r.run(ctx) })
	}
	spread := func() (map[string]int, bool) {
		n := map[string]int{}
		for _, r := range readers {
			n[r.child()]++
		}
		ok := len(n) == 3
		for _, v := range n {
			ok = ok && v >= clients/3*9/10 && v <= clients/3*11/10
		}
		return n, ok
	}
	first, _ := spread()
	t.Logf("on arrival: %v", first)
	waitFor(t, "the clients spread within ±10%", 15*time.Second, func() bool { _, ok := spread(); return ok })
	time.Sleep(2 * time.Second)
	n, ok := spread()
	t.Logf("settled: %v", n)
	if !ok {
		t.Fatalf("the spread did not hold: %v", n)
	}
	for i, r := range readers {
		if err := r.failure(); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
}

func (r *clusterReader) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// TestClusterRollingRestart: 1,000 sticky clients read while each of 3
// children in turn drains (SIGTERM), exits and comes back on its address:
// no gap, no duplicate; the longest stall of a move is reported.
func TestClusterRollingRestart(t *testing.T) {
	const clients, window = 1000, 500 * time.Millisecond
	ex, rt, kids := startClusterTier(t, 500, "a", "b", "c")
	seeds := []string{kids["a"].addr, kids["b"].addr, kids["c"].addr}
	waitDirectory(t, seeds[0], 3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	readers, wait := readersUp(t, ctx, clients, 30*time.Second, func(i int) (cluster.Config, []string) {
		return cluster.Config{Seeds: seeds, ID: "roll-" + strconv.Itoa(i), MoveWindow: window,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond}, []string{strconv.Itoa(1 + i%30), strconv.Itoa(1 + (i+11)%30)}
	})
	for _, n := range []string{"a", "b", "c"} {
		k := kids[n]
		k.p.signal(syscall.SIGTERM)
		k.p.waitLog(t, 10*time.Second, "drained: every client left")
		if code := k.p.exited(t, 10*time.Second); code != 0 {
			t.Fatalf("%s exited %d after its drain", n, code)
		}
		kids[n] = startClusterChild(t, rt.Addr(), n, k.addr)
		waitDirectory(t, seeds[0], 3)
	}
	time.Sleep(window + 500*time.Millisecond) // the moves back settle
	head := rt.Head()
	want := expected(ex, head)
	waitFor(t, "every client caught up", 30*time.Second, func() bool {
		for _, r := range readers {
			if !r.caughtUp(want) {
				return false
			}
		}
		return true
	})
	var stall time.Duration
	moves, why := 0, map[cluster.Reason]int{}
	for i, r := range readers {
		if err := r.check(want); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		for _, m := range r.movesSince(time.Time{}) {
			moves++
			why[m.Reason]++
			stall = max(stall, m.Stall)
			if m.Lost {
				t.Fatalf("client %d could not resume: %+v", i, m)
			}
		}
	}
	t.Logf("rolling restart: %d moves %v, longest stall %v, no gap, no duplicate", moves, why, stall)
	if why[cluster.ReasonDrain] < clients {
		t.Fatalf("%d drain moves, want at least one per client", why[cluster.ReasonDrain])
	}
	cancel()
	wait()
}

// TestClusterBadSeeds: a seed list where no address answers fails fast
// with every address's error; a seed that answers garbage costs a dial
// timeout; a dead seed before a live one costs nothing but its refusal.
func TestClusterBadSeeds(t *testing.T) {
	dead := freeAddr(t)
	garbage, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			go func() { // garbage, then silence until the dial gives up
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\xff\xfe garbage\n"))
				time.Sleep(time.Second)
				c.Close()
			}()
		}
	}()
	start := time.Now()
	_, err = cluster.Dial(t.Context(), cluster.Config{Seeds: []string{dead, garbage.Addr().String()}, DialTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no seed answered") || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), garbage.Addr().String()) {
		t.Fatalf("dial: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the failed dial took %v", d)
	}
	if _, err := cluster.Dial(t.Context(), cluster.Config{}); err == nil {
		t.Fatal("no seeds dialled")
	}
	if _, err := cluster.Dial(t.Context(), cluster.Config{Seeds: []string{dead}, Policy: "nearest"}); err == nil {
		t.Fatal("a bad policy dialled")
	}

	_, _, kids := startClusterTier(t, 200, "a")
	waitDirectory(t, kids["a"].addr, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := dialReader(t, ctx, cluster.Config{Seeds: []string{dead, kids["a"].addr}}, "1")
	go r.run(ctx)
	waitFor(t, "subscribed through the live seed", 5*time.Second, r.subscribed)
	if r.child() != kids["a"].addr {
		t.Fatalf("on %q", r.child())
	}
}
