package session

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// testConn is a client connection without a socket: it keeps what the loop
// wrote and says how much of it is unsent (pending, or all of it when
// unread), and closes as gnet does, running Loop.Closed before Close returns.
type testConn struct {
	l       *Loop
	cl      *Client
	out     []byte
	written int
	keep    bool // keep the bytes (else only count them)
	unread  bool // a client that reads nothing: every byte written is unsent
	pending int
	queued  int // what the "kernel" holds (Queued)
	closed  bool
}

func (c *testConn) Write(b []byte) {
	if c.closed {
		return
	}
	c.written += len(b)
	if c.keep {
		c.out = append(c.out, b...)
	}
}

func (c *testConn) Buffered() int {
	if c.unread {
		return c.written
	}
	return c.pending
}

func (c *testConn) Queued() int { return c.queued }

func (c *testConn) Close() {
	if !c.closed {
		c.closed = true
		c.l.Closed(c.cl)
	}
}

func (c *testConn) RemoteAddr() string { return "test" }

// lines takes the lines written so far.
func (c *testConn) lines() []string {
	s := strings.Split(strings.TrimSuffix(string(c.out), "\n"), "\n")
	c.out = c.out[:0]
	if len(s) == 1 && s[0] == "" {
		return nil
	}
	return s
}

func testMetrics() *Metrics {
	c := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}) }
	cv := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "g"}, []string{"group"})
	}
	return &Metrics{SlowDisconnect: c(), SlowConflated: c(), SlowResynced: c(), Throttled: c(), Shed: c(), Denied: c(), ResumeArrivals: c(), GroupOut: cv(), GroupLost: cv(), GroupRedelivered: cv(), GroupMembers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "m"}, []string{"group"}), Authenticated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "a"}),
		Behind:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"}),
		ClientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"code"}),
		BytesOut:     c(), FramesOut: c(), Writes: c()}
}

// rig is a Loop over a real Core, fed by hand, with a clock the test moves.
type rig struct {
	t     *testing.T
	state *frames.Shared
	l     *Loop
	now   int64
	seq   uint64          // last seq applied to the core
	added uint64          // last seq handed to the loop
	queue []*frames.Batch // applied, not yet handed to the loop (the loop's queue)
}

func newRig(t *testing.T, cfg Config) *rig {
	r := &rig{t: t, state: frames.NewShared(frames.NewCore(1<<16, 64<<20)), now: 1e18}
	cfg.Now = func() int64 { return r.now }
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 1 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxCommandsPerSec == 0 {
		cfg.MaxCommandsPerSec = 1000
	}
	r.l = NewLoop(cfg, r.state, testMetrics())
	return r
}

func (r *rig) open() *testConn {
	c := &testConn{l: r.l, keep: true}
	c.cl = r.l.Open(c)
	return c
}

// apply parses the next n seqs into the core; the batch waits in the queue.
func (r *rig) apply(n uint64) {
	var b *frames.Batch
	r.state.Write(func(c *frames.Core) {
		b = applyN(r.t, c, r.seq+1, r.seq+n)
	})
	r.seq += n
	b.Last = r.seq
	b.Share(1)
	r.queue = append(r.queue, b)
}

// drain hands the queue to the loop and flushes, as a drain does.
func (r *rig) drain() {
	for _, b := range r.queue {
		r.l.Add(b, r.now)
		r.added = b.Last
		b.Release()
	}
	r.queue = r.queue[:0]
	r.l.Flush()
	r.l.Resync()
}

func (r *rig) input(c *testConn, line string) bool {
	return r.l.Input(c.cl, []byte(line+"\n"))
}

// modelClient is the naive model of one client's subscriptions: per symbol
// (and "*") the seq after which frames are due.
type modelClient struct {
	from map[string]uint64
	// owed: seqs due to it, not yet received (a stalled client's); level:
	// the highest seq owed or received. A client that catches up from the
	// history may get seqs past the loop's (up to the core's last), which
	// the loop then skips.
	owed  []uint64
	level uint64
}

func (m *modelClient) due(seq uint64) bool {
	if f, ok := m.from["*"]; ok && seq > f {
		return true
	}
	f, ok := m.from[feedtest.Sym(seq)]
	return ok && seq > f
}

// TestModelSubscriptions drives clients with random SUB, UNSUB, SUB * and
// UNSUB * lines between random feed steps (parsed into the core, then
// handed to the loop later, as the loop's queue does) and checks every line
// each client gets against a naive model: each frame once, in seq order,
// exactly the seqs its subscriptions cover from the P of their OK on; each
// OK SUB at the core's last seq; a named symbol's image only its own frames
// at or before P; "*"'s image every symbol seen.
func TestModelSubscriptions(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { modelRun(t, seed) })
	}
}

func modelRun(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	r := newRig(t, Config{MaxPending: 1 << 30})
	const nClients = 6
	conns := make([]*testConn, nClients)
	models := make([]*modelClient, nClients)
	for i := range conns {
		conns[i], models[i] = r.open(), &modelClient{from: map[string]uint64{}}
	}
	sym := func() string { return feedtest.Sym(uint64(rnd.IntN(40) + 1)) }
	// frames reads the frames client i got since the last read.
	frames := func(i int) []uint64 {
		t.Helper()
		var got []uint64
		for _, line := range conns[i].lines() {
			if wire.KindOf([]byte(line)) != wire.LineFrame {
				t.Fatalf("client %d: unexpected line %q", i, line)
			}
			var m wire.Msg
			seq, _, err := wire.DecodeTextFrame([]byte(line), &m)
			if err != nil || m != feedtest.Msg(seq) {
				t.Fatalf("client %d: frame %q: %v", i, line, err)
			}
			got = append(got, seq)
		}
		return got
	}
	// catchUp runs the passes over the clients behind (a catch-up budget
	// each) until every client that reads is level, as the ticks do.
	catchUp := func() {
		for k := 0; k < 64 && slices.ContainsFunc(conns, func(c *testConn) bool { return c.pending == 0 && c.cl.behind }); k++ {
			r.l.Tick()
		}
	}
	// settle checks what client i got: what it was owed, in order, then
	// (a catch-up past the loop) the next seqs due up to the core's last.
	settle := func(i int, got []uint64) {
		t.Helper()
		m := models[i]
		for _, s := range got {
			if len(m.owed) > 0 {
				if s != m.owed[0] {
					t.Fatalf("client %d got %d, owed %v", i, s, m.owed)
				}
				m.owed = m.owed[1:]
				continue
			}
			next := m.level + 1
			for next <= r.seq && !m.due(next) {
				next++
			}
			if s != next || s > r.seq {
				t.Fatalf("client %d got %d past what it was owed, want %d (core at %d)", i, s, next, r.seq)
			}
			m.level = s
		}
	}
	for step := 0; step < 300; step++ {
		switch op := rnd.IntN(10); {
		case op < 3: // the feed moves on; the loop lags behind
			r.apply(uint64(rnd.IntN(30) + 1))
		case op < 5: // the loop drains: each client gets what the model says
			from := r.added
			r.drain()
			catchUp()
			for i, c := range conns {
				m := models[i]
				for s := from + 1; s <= r.added; s++ {
					if s > m.level && m.due(s) {
						m.owed, m.level = append(m.owed, s), s
					}
				}
				settle(i, frames(i))
				if c.pending == 0 && len(m.owed) > 0 {
					t.Fatalf("client %d reads but is owed %v", i, m.owed)
				}
			}
		case op < 6: // a client's socket fills up, or drains
			c := conns[rnd.IntN(nClients)]
			c.pending = 1 - c.pending
		default: // a command, from a client that drained its socket
			i := rnd.IntN(nClients)
			m := models[i]
			stalled := conns[i].pending
			conns[i].pending = 0
			r.l.Tick()
			catchUp()
			settle(i, frames(i))
			if len(m.owed) > 0 {
				t.Fatalf("client %d drained but is owed %v", i, m.owed)
			}
			// The loop may lag the core: frames up to P still queued are
			// the image's, not due again.
			var syms []string
			for n := rnd.IntN(3) + 1; len(syms) < n; {
				s := sym()
				if rnd.IntN(8) == 0 {
					s = "*"
				}
				syms = append(syms, s)
			}
			verb := "SUB"
			if rnd.IntN(3) == 0 {
				verb = "UNSUB"
			}
			r.input(conns[i], verb+" "+strings.Join(syms, " "))
			r.l.Tick() // a SUB * streams from the next passes
			catchUp()
			conns[i].pending = stalled
			lines := conns[i].lines()
			// Distinct symbols are answered once each, in order.
			var distinct []string
			for _, s := range syms {
				if !slices.Contains(distinct, s) {
					distinct = append(distinct, s)
				}
			}
			if verb == "UNSUB" {
				for k, s := range distinct {
					if k >= len(lines) || lines[k] != "OK UNSUB "+s {
						t.Fatalf("UNSUB %v: answer %q", distinct, lines)
					}
					delete(m.from, s)
				}
				continue
			}
			hasAll := slices.Contains(distinct, "*")
			_, wasAll := m.from["*"]
			p := r.seq
			var image []string
			oks := 0
			for _, line := range lines {
				switch wire.KindOf([]byte(line)) {
				case wire.LineFrame:
					// "*"'s image comes before every OK; a named symbol's
					// just before its own OK.
					if hasAll && oks > 0 || oks >= len(distinct) {
						t.Fatalf("SUB %v: image frame after its OK: %q", distinct, line)
					}
					if !hasAll {
						var msg wire.Msg
						wire.DecodeTextFrame([]byte(line), &msg)
						if s := string(wire.AppendSymbol(nil, msg.Security)); s != distinct[oks] {
							t.Fatalf("SUB %v: image of %s before the OK of %s", distinct, s, distinct[oks])
						}
					}
					image = append(image, line)
				case wire.LineOK:
					_, s, seq, err := wire.ParseOK([]byte(line))
					if err != nil || s != distinct[oks] || seq != p {
						t.Fatalf("SUB %v: OK %q, want %s at %d", distinct, line, distinct[oks], p)
					}
					oks++
				default:
					t.Fatalf("SUB %v: line %q", distinct, line)
				}
			}
			if oks != len(distinct) {
				t.Fatalf("SUB %v: %d OKs in %q", distinct, oks, lines)
			}
			seen := map[string]bool{}
			for _, f := range image {
				var msg wire.Msg
				seq, _, err := wire.DecodeTextFrame([]byte(f), &msg)
				s := string(wire.AppendSymbol(nil, msg.Security))
				if err != nil || seq > p {
					t.Fatalf("image frame %q after P %d: %v", f, p, err)
				}
				if !hasAll && (wasAll || !slices.Contains(distinct, s)) {
					t.Fatalf("SUB %v (on * %v): image of %s", distinct, wasAll, s)
				}
				seen[s] = true
			}
			if hasAll {
				for s := uint64(1); s <= p; s++ {
					if !seen[feedtest.Sym(s)] {
						t.Fatalf("SUB *: no image of %s (seen at seq %d)", feedtest.Sym(s), s)
					}
				}
			}
			for _, s := range distinct {
				m.from[s] = p
			}
			if hasAll { // the image covered the named ones up to P too
				for s := range m.from {
					m.from[s] = max(m.from[s], p)
				}
			}
		}
	}
}

// TestCommands: PING, TIME on the injected clock, an unknown verb, a bad
// argument, a line split over reads, and the flood limit.
func TestCommands(t *testing.T) {
	r := newRig(t, Config{MaxCommandsPerSec: 5})
	c := r.open()
	r.l.Input(c.cl, []byte("PI"))
	if got := c.lines(); got != nil {
		t.Fatalf("half a line answered: %q", got)
	}
	r.l.Input(c.cl, []byte("NG\nTIME 5\n"))
	want := []string{"PONG", fmt.Sprintf("TIME 5 %d %d", r.now, r.now)}
	if got := c.lines(); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	r.input(c, "HOLA x")
	r.input(c, "RESUME x 00001")
	got := c.lines()
	if len(got) != 2 || got[0] != `ERR BADCMD unknown command "HOLA"` || !strings.HasPrefix(got[1], "ERR BADARG ") || strings.Contains(got[1], "wire:") {
		t.Fatalf("bad lines answered %q", got)
	}
	if c.cl.Dead() {
		t.Fatal("a bad line closed the client")
	}
	// Five commands this second are answered; the sixth closes it.
	r.now += int64(time.Second)
	if r.l.Input(c.cl, []byte(strings.Repeat("PING\n", 6))) != true || !c.cl.Dead() {
		t.Fatal("flood not cut")
	}
	got = c.lines()
	if len(got) != 6 || got[4] != "PONG" || !strings.HasPrefix(got[5], "ERR FLOOD ") {
		t.Fatalf("flood answered %q", got)
	}
	// A line over the limit closes it too.
	c2 := r.open()
	if !r.l.Input(c2.cl, bytes.Repeat([]byte("x"), wire.MaxLineLen+1)) {
		t.Fatal("an endless line was not cut")
	}
	if got := c2.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "ERR TOOLONG ") {
		t.Fatalf("endless line answered %q", got)
	}
}
