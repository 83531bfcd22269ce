package root

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/internal/daemontest"
	"tickrelay/latency"
	"tickrelay/wire"
)

// ---- fake exchange ----------------------------------------------------

// fakeExchange is a raw TCP exchange speaking wire feed frames: logon, then
// items testBody(seq) from the asked seq on, as far as published. A script
// may take over a connection to misbehave.
type fakeExchange struct {
	t      *testing.T
	ln     net.Listener
	mu     sync.Mutex
	pub    uint64
	more   chan struct{} // closed and replaced by publish
	logons chan wire.Logon
	nconn  atomic.Int32
	// script, if set, serves connection n (1-based); return false to fall
	// back to the default stream.
	script func(n int, c net.Conn, lg wire.Logon) bool
	// epochOf, if set, is the epoch the logon reply of connection n names
	// (else the one asked for).
	epochOf func(n int, lg wire.Logon) uint32
	wg      sync.WaitGroup
	done    chan struct{}
}

func newFakeExchange(t *testing.T) *fakeExchange {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ex := &fakeExchange{t: t, ln: ln, more: make(chan struct{}), logons: make(chan wire.Logon, 100), done: make(chan struct{})}
	ex.wg.Add(1)
	go ex.accept()
	t.Cleanup(func() { close(ex.done); ln.Close(); ex.wg.Wait() })
	return ex
}

func (ex *fakeExchange) addr() string { return ex.ln.Addr().String() }

// publish makes seqs up to n available.
func (ex *fakeExchange) publish(n uint64) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if n > ex.pub {
		ex.pub = n
		close(ex.more)
		ex.more = make(chan struct{})
	}
}

func (ex *fakeExchange) published() (uint64, chan struct{}) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.pub, ex.more
}

func (ex *fakeExchange) accept() {
	defer ex.wg.Done()
	for {
		c, err := ex.ln.Accept()
		if err != nil {
			return
		}
		ex.wg.Add(1)
		go func() {
			defer ex.wg.Done()
			defer c.Close()
			go func() { <-ex.done; c.Close() }()
			ex.serve(int(ex.nconn.Add(1)), c)
		}()
	}
}

func (ex *fakeExchange) serve(n int, c net.Conn) {
	lg, err := readLogon(c)
	if err != nil {
		return
	}
	ex.logons <- lg
	if lg.User != "tickrelay" || lg.Password != "secret" {
		c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonBadAuth, Reason: "who are you"}))
		return
	}
	epoch := lg.Epoch
	if ex.epochOf != nil {
		epoch = ex.epochOf(n, lg)
	}
	if _, err := c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonOK, NextSeq: lg.StartSeq, Epoch: epoch})); err != nil {
		return
	}
	if ex.script != nil && ex.script(n, c, lg) {
		return
	}
	ex.stream(c, lg.StartSeq, 0)
}

// readLogon reads the root's logon, the first frame it sends.
func readLogon(c net.Conn) (wire.Logon, error) {
	body, err := wire.NewFeedReader(0).ReadFrame(c)
	if err != nil {
		return wire.Logon{}, err
	}
	return wire.ParseLogon(body)
}

// sleep waits d or until the test ends.
func (ex *fakeExchange) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-ex.done:
	}
}

// stream sends items from..to (to 0: forever) as they are published, several
// per write; a heartbeat when idle.
func (ex *fakeExchange) stream(c net.Conn, from, to uint64) error {
	var out []byte
	for seq := from; to == 0 || seq <= to; {
		pub, more := ex.published()
		if seq > pub {
			select {
			case <-more:
			case <-ex.done:
				return net.ErrClosed
			case <-time.After(200 * time.Millisecond):
				if _, err := c.Write(wire.AppendHeartbeat(nil, seq, time.Now().UnixNano())); err != nil {
					return err
				}
			}
			continue
		}
		out = out[:0]
		for ; seq <= pub && (to == 0 || seq <= to) && len(out) < 8<<10; seq++ {
			out = appendTestFrame(out, seq)
		}
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// ---- fake child -------------------------------------------------------

// fakeChild is a raw relay client: Hello, then read frames.
type fakeChild struct {
	t     *testing.T
	c     net.Conn
	buf   []byte
	rd    int
	wr    int
	next  uint64 // next seq expected
	epoch uint32 // of the items (a Reset frame moves it on)
	br    wire.BatchReader
	hb    int // heartbeats seen
}

func dialChild(t *testing.T, addr net.Addr, from uint64) *fakeChild {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc := &fakeChild{t: t, c: c, buf: make([]byte, 8<<20), next: from}
	if from != 0 {
		fc.send(wire.AppendHello(nil, wire.Hello{FromSeq: from, Name: "test"}))
	}
	return fc
}

func (fc *fakeChild) send(b []byte) {
	fc.t.Helper()
	if _, err := fc.c.Write(b); err != nil {
		fc.t.Fatal(err)
	}
}

// frame reads the next relay frame (payload valid until the next call).
func (fc *fakeChild) frame(timeout time.Duration) (byte, []byte, error) {
	fc.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		typ, p, n, err := wire.NextRelayFrame(fc.buf[fc.rd:fc.wr])
		if err == nil {
			fc.rd += n
			return typ, p, nil
		}
		if !errors.Is(err, wire.ErrShort) {
			return 0, nil, err
		}
		if fc.rd > 0 {
			fc.wr = copy(fc.buf, fc.buf[fc.rd:fc.wr])
			fc.rd = 0
		}
		k, err := fc.c.Read(fc.buf[fc.wr:])
		fc.wr += k
		if k == 0 && err != nil {
			return 0, nil, err
		}
	}
}

// readTo reads batches until it has every seq up to target, checking order
// (no gap, no duplicate), bodies and stamps.
func (fc *fakeChild) readTo(target uint64, timeout time.Duration) error {
	return fc.readToEpoch(fc.epoch, target, timeout)
}

// readToEpoch is readTo up to target in epoch, across Reset frames.
func (fc *fakeChild) readToEpoch(epoch uint32, target uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for fc.epoch < epoch || fc.epoch == epoch && fc.next <= target {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timeout at epoch %d seq %d waiting for %d", fc.epoch, fc.next, target)
		}
		typ, p, err := fc.frame(left)
		if err != nil {
			return fmt.Errorf("at seq %d: %w", fc.next, err)
		}
		switch typ {
		case wire.RelayReset:
			r := wire.ParseReset(p)
			if r.Epoch <= fc.epoch || r.Prev != fc.epoch || r.PrevLast != fc.next-1 {
				return fmt.Errorf("reset %+v at epoch %d seq %d", r, fc.epoch, fc.next)
			}
			fc.epoch, fc.next = r.Epoch, r.Seq
		case wire.RelayBatch:
			fc.br.Reset(p)
			if fc.br.Epoch != fc.epoch {
				return fmt.Errorf("a batch of epoch %d in epoch %d", fc.br.Epoch, fc.epoch)
			}
			for fc.br.Next() {
				it := fc.br.Item
				if it.Seq != fc.next {
					return fmt.Errorf("got seq %d, want %d", it.Seq, fc.next)
				}
				if !bytes.Equal(it.Body, testBody(it.Seq)) {
					return fmt.Errorf("seq %d: body differs", it.Seq)
				}
				fc.next++
			}
			if err := fc.br.Err(); err != nil {
				return err
			}
		case wire.RelayHeartbeat:
			fc.hb++
		case wire.RelayError:
			return wire.ParseRelayError(p)
		default:
			return fmt.Errorf("unexpected frame %q", typ)
		}
	}
	return nil
}

// expectError reads until an Error frame (skipping batches) and returns it.
func (fc *fakeChild) expectError(timeout time.Duration) (wire.RelayErr, error) {
	deadline := time.Now().Add(timeout)
	for {
		typ, p, err := fc.frame(time.Until(deadline))
		if err != nil {
			return wire.RelayErr{}, err
		}
		if typ == wire.RelayError {
			return wire.ParseRelayError(p), nil
		}
	}
}

// expectClosed reads until EOF.
func (fc *fakeChild) expectClosed(timeout time.Duration) error {
	fc.c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, fc.c)
	return err
}

// ---- root under test --------------------------------------------------

// tlog is a slog destination that writes to t until the test ends.
type tlog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tlog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testConfig(t *testing.T, ex *fakeExchange) Config {
	w := &tlog{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	cfg := DefaultConfig()
	cfg.ExchangeAddr = ex.addr()
	cfg.Password = "secret"
	cfg.Addr = "127.0.0.1:0"
	cfg.RingSize = 1 << 12
	cfg.Loops = 2
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	cfg.IdleTimeout = 2 * time.Second
	cfg.Tick = 20 * time.Millisecond
	cfg.Heartbeat = 200 * time.Millisecond
	cfg.DrainTimeout = time.Second
	cfg.Registerer = prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

// startRoot runs a root until the test ends; stop cancels it early and
// returns Run's result.
func startRoot(t *testing.T, cfg Config) (r *Root, stop func() error) {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("root not ready")
	}
	return r, stop
}

func waitHead(t *testing.T, r *Root, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Head() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("root head %d, want %d", r.Head(), seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const ioTimeout = 10 * time.Second

// ---- tests ------------------------------------------------------------

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.ExchangeAddr = "nope" },
		func(c *Config) { c.Addr = "" },
		func(c *Config) { c.User = "" },
		func(c *Config) { c.Password = "12345678901234567" },
		func(c *Config) { c.RingSize = 1000 },
		func(c *Config) { c.MaxBackoff = c.MinBackoff / 2 },
		func(c *Config) { c.MaxBatchBytes = 10 },
		func(c *Config) { c.GroupLinger = -time.Second },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: invalid config accepted", i)
		}
	}
}

func TestFlowAndTwoChildren(t *testing.T) {
	ex := newFakeExchange(t)
	r, _ := startRoot(t, testConfig(t, ex))
	if a, ok := r.Addr().(*net.TCPAddr); !ok || a.Port == 0 {
		t.Fatalf("Addr() = %v, want a bound port", r.Addr())
	}
	if lg := <-ex.logons; lg.StartSeq != 1 {
		t.Fatalf("logon start seq %d want 1", lg.StartSeq)
	}
	ex.publish(500)
	waitHead(t, r, 500)
	a := dialChild(t, r.Addr(), 1)
	b := dialChild(t, r.Addr(), 300)
	if err := a.readTo(500, ioTimeout); err != nil {
		t.Fatal("child a:", err)
	}
	if err := b.readTo(500, ioTimeout); err != nil {
		t.Fatal("child b:", err)
	}
	// Live: both keep following.
	ex.publish(2000)
	if err := a.readTo(2000, ioTimeout); err != nil {
		t.Fatal("child a live:", err)
	}
	if err := b.readTo(2000, ioTimeout); err != nil {
		t.Fatal("child b live:", err)
	}
	// Idle children get heartbeats carrying the head.
	typ, p, err := a.frame(ioTimeout)
	if err != nil || typ != wire.RelayHeartbeat {
		t.Fatalf("idle child got %q, %v; want heartbeat", typ, err)
	}
	if head, _ := wire.ParseHeartbeat(p); head != 2000 {
		t.Fatalf("heartbeat head %d want 2000", head)
	}
	if got := testutil.ToFloat64(r.Metrics().ItemsReceived); got != 2000 {
		t.Errorf("items received metric %v", got)
	}
	if got := testutil.ToFloat64(r.Metrics().Children); got != 2 {
		t.Errorf("children metric %v", got)
	}
}

func TestChildFromLiveEdge(t *testing.T) {
	ex := newFakeExchange(t)
	r, _ := startRoot(t, testConfig(t, ex))
	ex.publish(100)
	waitHead(t, r, 100)
	c := dialChild(t, r.Addr(), 0)
	c.send(wire.AppendHello(nil, wire.Hello{FromSeq: 0, Name: "live"}))
	c.next = 101
	// Hello is processed before the next publish: wait for the child's
	// first heartbeat to know it is registered.
	if typ, _, err := c.frame(ioTimeout); err != nil || typ != wire.RelayHeartbeat {
		t.Fatalf("got %q %v, want heartbeat", typ, err)
	}
	ex.publish(150)
	if err := c.readTo(150, ioTimeout); err != nil {
		t.Fatal(err)
	}
}

func TestSeqGoneAndFuture(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.RingSize = 64
	r, _ := startRoot(t, cfg)
	ex.publish(200)
	waitHead(t, r, 200)

	old := dialChild(t, r.Addr(), 1)
	e, err := old.expectError(ioTimeout)
	if err != nil || e.Code != wire.CodeSeqGone || e.Seq != 137 {
		t.Fatalf("from 1 on ring [137,200]: got %+v, %v; want SeqGone 137", e, err)
	}
	if err := old.expectClosed(ioTimeout); err != nil {
		t.Fatal("not closed after SeqGone:", err)
	}
	fut := dialChild(t, r.Addr(), 202)
	e, err = fut.expectError(ioTimeout)
	if err != nil || e.Code != wire.CodeSeqFuture || e.Seq != 200 {
		t.Fatalf("from 202 with head 200: got %+v, %v; want SeqFuture 200", e, err)
	}
	ok := dialChild(t, r.Addr(), 137)
	if err := ok.readTo(200, ioTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestExchangeDropResumes drops the exchange connection mid-stream several
// times: the root logs in again from last+1 and a child sees every seq once.
func TestExchangeDropResumes(t *testing.T) {
	ex := newFakeExchange(t)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n <= 3 {
			ex.stream(c, lg.StartSeq, uint64(n)*333) // then close
			return true
		}
		return false
	}
	r, _ := startRoot(t, testConfig(t, ex))
	child := dialChild(t, r.Addr(), 1)
	ex.publish(3000)
	if err := child.readTo(3000, ioTimeout); err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 334, 667, 1000}
	for i, w := range want {
		if lg := <-ex.logons; lg.StartSeq != w {
			t.Fatalf("logon %d start %d want %d", i, lg.StartSeq, w)
		}
	}
	if got := testutil.ToFloat64(r.Metrics().Reconnects); got < 3 {
		t.Errorf("reconnects metric %v < 3", got)
	}
}

// TestExchangeGapRelogin: the exchange skips seqs; the root drops the session
// and logs in from last+1. Duplicates are ignored.
func TestExchangeGapRelogin(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(400)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		switch n {
		case 1:
			ex.stream(c, 1, 100)
			ex.stream(c, 90, 110) // duplicates 90..100, then 101..110
			ex.stream(c, 115, 0)  // gap: 111..114 missing
			return true
		case 2:
			// Heartbeat announcing a later next seq is a gap too.
			ex.stream(c, lg.StartSeq, 200)
			c.Write(wire.AppendHeartbeat(nil, 250, 0))
			ex.sleep(time.Second)
			return true
		}
		return false
	}
	r, _ := startRoot(t, testConfig(t, ex))
	child := dialChild(t, r.Addr(), 1)
	if err := child.readTo(400, ioTimeout); err != nil {
		t.Fatal(err)
	}
	for i, w := range []uint64{1, 111, 201} {
		if lg := <-ex.logons; lg.StartSeq != w {
			t.Fatalf("logon %d start %d want %d", i, lg.StartSeq, w)
		}
	}
	m := r.Metrics()
	if got := testutil.ToFloat64(m.Gaps); got != 2 {
		t.Errorf("gaps metric %v want 2", got)
	}
	if got := testutil.ToFloat64(m.Duplicates); got != 11 {
		t.Errorf("duplicates metric %v want 11", got)
	}
}

// TestExchangeSeqBackwards: the exchange goes back over seqs the root holds
// (S, S+1, then S again): the root says so at once, once per run, in the
// log and tickrelay_root_seq_backwards_total, ignores the resent items
// and keeps the session; children get each seq once.
func TestExchangeSeqBackwards(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(300)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n != 1 {
			return false
		}
		ex.stream(c, 1, 100)
		ex.stream(c, 100, 150) // back to 100
		ex.stream(c, 120, 300) // and back again, to 120
		return true
	}
	r, logs := startRootLogged(t, ex)
	child := dialChild(t, r.Addr(), 1)
	if err := child.readTo(300, ioTimeout); err != nil {
		t.Fatal(err)
	}
	m := r.Metrics()
	if got := testutil.ToFloat64(m.SeqBackwards); got != 2 {
		t.Errorf("seq_backwards %v, want 2", got)
	}
	// 100, then 120..150: had the first run dropped the session, the
	// relogin from 101 would have seen no second one.
	if got := testutil.ToFloat64(m.Duplicates); got != 1+31 {
		t.Errorf("duplicates %v, want 32", got)
	}
	out := logs.String()
	if n := strings.Count(out, "exchange seq went backwards"); n != 2 || !strings.Contains(out, "seq=100 last_seq=100") || !strings.Contains(out, "seq=120 last_seq=150") {
		t.Errorf("%d backwards lines:\n%s", n, out)
	}
}

// TestExchangeBadInput feeds malformed frames; each drops the session, the
// root resumes from last+1, and children keep getting every item.
func TestExchangeBadInput(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(1000)
	bad := [][]byte{
		[]byte("GARBAGE! not a frame at all........"),           // reads as a huge length
		append([]byte{48, 0}, bytes.Repeat([]byte{'x'}, 48)...), // plausible length, nonsense body
		{0, 0, 1, 2, 3},    // zero length
		{0xff, 0xff, 1, 2}, // oversized length
		func() []byte { // unknown message type
			f := appendTestFrame(nil, 0)
			binary.LittleEndian.PutUint64(f[2:], 999999)
			binary.LittleEndian.PutUint16(f[2+18:], 77)
			return f
		}(),
		nil, // truncated frame, then close
	}
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n > len(bad) {
			return false
		}
		ex.stream(c, lg.StartSeq, lg.StartSeq+99)
		if b := bad[n-1]; b != nil {
			c.Write(b)
			ex.sleep(time.Second) // the root must hang up, not us
		} else {
			f := appendTestFrame(nil, lg.StartSeq+100)
			c.Write(f[:len(f)/2])
		}
		return true
	}
	r, _ := startRoot(t, testConfig(t, ex))
	child := dialChild(t, r.Addr(), 1)
	if err := child.readTo(1000, ioTimeout); err != nil {
		t.Fatal(err)
	}
	for i := range bad {
		if lg := <-ex.logons; lg.StartSeq != uint64(i)*100+1 {
			t.Fatalf("logon %d start %d want %d", i, lg.StartSeq, i*100+1)
		}
	}
	bi := r.Metrics().BadInput
	for kind, want := range map[string]float64{"empty": 1, "too_large": 2, "truncated": 1, "unknown_type": 1, "closed_mid_frame": 1} {
		if got := testutil.ToFloat64(bi.WithLabelValues(kind)); got != want {
			t.Errorf("bad input %s = %v want %v", kind, got, want)
		}
	}
}

// TestExchangeIdleReconnect: a silent exchange (no items, no heartbeats)
// is dropped after IdleTimeout and the root logs in again.
func TestExchangeIdleReconnect(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(50)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n == 1 {
			ex.stream(c, 1, 20)
			ex.sleep(3 * time.Second)
			return true
		}
		return false
	}
	cfg := testConfig(t, ex)
	cfg.IdleTimeout = 300 * time.Millisecond
	r, _ := startRoot(t, cfg)
	c := dialChild(t, r.Addr(), 1)
	if err := c.readTo(50, ioTimeout); err != nil {
		t.Fatal(err)
	}
	<-ex.logons
	if lg := <-ex.logons; lg.StartSeq != 21 {
		t.Fatalf("relogon from %d want 21", lg.StartSeq)
	}
}

func TestBadAuthRetries(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.Password = "wrong"
	r, _ := startRoot(t, cfg)
	for i := 0; i < 3; i++ {
		select {
		case <-ex.logons:
		case <-time.After(ioTimeout):
			t.Fatal("no logon retry")
		}
	}
	if r.Head() != 0 {
		t.Fatal("head moved")
	}
}

// TestChildGarbage: a child sending garbage gets BadFrame and is closed;
// another child keeps streaming.
func TestChildGarbage(t *testing.T) {
	ex := newFakeExchange(t)
	r, _ := startRoot(t, testConfig(t, ex))
	ex.publish(100)
	good := dialChild(t, r.Addr(), 1)
	if err := good.readTo(100, ioTimeout); err != nil {
		t.Fatal(err)
	}
	for i, junk := range [][]byte{
		[]byte("\x05\x00\x00\x00Zjunk"),               // unknown type
		[]byte("\xff\xff\xff\x7fH"),                   // oversized
		[]byte("\x00\x00\x00\x00"),                    // zero length
		wire.AppendHello(nil, wire.Hello{FromSeq: 1}), // second hello
	} {
		bad := dialChild(t, r.Addr(), 1)
		bad.send(junk)
		e, err := bad.expectError(ioTimeout)
		if err != nil || e.Code != wire.CodeBadFrame {
			t.Fatalf("junk %d: got %+v, %v; want BadFrame", i, e, err)
		}
		if err := bad.expectClosed(ioTimeout); err != nil {
			t.Fatalf("junk %d: not closed: %v", i, err)
		}
	}
	ex.publish(300)
	if err := good.readTo(300, ioTimeout); err != nil {
		t.Fatal("good child after junk:", err)
	}
}

func TestTimeRequest(t *testing.T) {
	ex := newFakeExchange(t)
	r, _ := startRoot(t, testConfig(t, ex))
	c := dialChild(t, r.Addr(), 0) // no hello needed for time
	t0 := time.Now().UnixNano()
	c.send(wire.AppendTimeReq(nil, t0))
	typ, p, err := c.frame(ioTimeout)
	if err != nil || typ != wire.RelayTimeReply {
		t.Fatalf("got %q, %v; want time reply", typ, err)
	}
	t3 := time.Now().UnixNano()
	g0, t1, t2 := wire.ParseTimeReply(p)
	if g0 != t0 || t1 < t0 || t2 < t1 || t2 > t3 {
		t.Fatalf("time reply t0=%d t1=%d t2=%d (sent %d, got at %d)", g0, t1, t2, t0, t3)
	}
}

// TestDrainOnShutdown: cancelling Run flushes children to the head and says
// goodbye with a Shutdown error.
func TestDrainOnShutdown(t *testing.T) {
	ex := newFakeExchange(t)
	r, stop := startRoot(t, testConfig(t, ex))
	ex.publish(5000)
	waitHead(t, r, 5000)
	c := dialChild(t, r.Addr(), 1001)
	if err := c.readTo(1001, ioTimeout); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	err := c.readTo(5001, ioTimeout)
	var re wire.RelayErr
	if !errors.As(err, &re) || re.Code != wire.CodeShutdown || c.next != 5001 {
		t.Fatalf("got %v at next %d; want every item then Shutdown", err, c.next)
	}
}

// TestFeedWakesOnlyLoopsWithChildren: items from the exchange wake the loop
// that serves a child, not a loop that only a closed connection ever
// reached (OnTick, an hour apart here, would be its only wake-up).
func TestFeedWakesOnlyLoopsWithChildren(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.Loops = 2
	cfg.Tick = time.Hour
	r, _ := startRoot(t, cfg)
	probe, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probe to be served", func() bool { return len(*r.relay.loops.Load()) == 1 })
	probe.Close()
	c := dialChild(t, r.Addr(), 1)
	waitFor(t, "a child on each loop, then the probe gone", func() bool {
		loops := *r.relay.loops.Load()
		return len(loops) == 2 && loops[0].nconns.Load()+loops[1].nconns.Load() == 1
	})
	loops := *r.relay.loops.Load()
	idle, busy := loops[0], loops[1]
	if idle.nconns.Load() != 0 {
		idle, busy = busy, idle
	}
	idleBefore, busyBefore := idle.passes.Load(), busy.passes.Load()
	for n := uint64(100); n <= 1000; n += 100 {
		ex.publish(n)
		if err := c.readTo(n, ioTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if got := idle.passes.Load() - idleBefore; got != 0 {
		t.Errorf("the loop without children ran %d drain passes for the feed", got)
	}
	// One pass may carry several publishes (its drain goes on while items
	// arrive, and the pass they queued may still be to come), so only
	// "some, eventually" is certain.
	waitFor(t, "a drain pass on the child's loop", func() bool { return busy.passes.Load() > busyBefore })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(ioTimeout); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestHopHistograms: the root records exch->root once per item received
// and its own dwell (root hop) once per item and child sent from the ring,
// and exposes just those two on its registry.
func TestHopHistograms(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	r, _ := startRoot(t, cfg)
	ex.publish(500)
	waitHead(t, r, 500)
	a := dialChild(t, r.Addr(), 1)
	b := dialChild(t, r.Addr(), 300)
	for _, c := range []*fakeChild{a, b} {
		if err := c.readTo(500, ioTimeout); err != nil {
			t.Fatal(err)
		}
	}
	// The loop records a batch right after writing it.
	want := int64(500 + 201)
	var h *latency.Hops
	for deadline := time.Now().Add(ioTimeout); ; time.Sleep(5 * time.Millisecond) {
		h = r.Hops()
		if h.Count(latency.HopRoot) >= want || time.Now().After(deadline) {
			break
		}
	}
	if n, e := h.Count(latency.HopRoot), h.Errors(latency.HopRoot); n != want || e != 0 {
		t.Fatalf("root hop: %d recorded, %d errors; want %d items sent", n, e, want)
	}
	if n := h.Count(latency.HopExchRoot) + h.Errors(latency.HopExchRoot); n != 500 {
		t.Fatalf("exch->root: %d recorded or rejected, want 500", n)
	}
	if max := h.Histogram(latency.HopRoot).Max(); max <= 0 || max > int64(10*time.Second) {
		t.Fatalf("root hop max %d ns", max)
	}
	mfs, err := cfg.Registerer.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	hops := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "tickrelay_root_hop_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				hops[lp.GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if len(hops) != 2 || hops["root"] != uint64(want) {
		t.Fatalf("exposed hops %v, want exch_root and root (%d)", hops, want)
	}
}

// startRootLogged starts a root on ex whose log the test reads.
func startRootLogged(t *testing.T, ex *fakeExchange) (*Root, *daemontest.Buffer) {
	logs := &daemontest.Buffer{}
	cfg := testConfig(t, ex)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r, _ := startRoot(t, cfg)
	return r, logs
}

// TestExchangeSequenceReset: the exchange starts a new epoch mid-stream; the
// root takes the new epoch's seqs from 1, a child gets a Reset frame between
// the epochs, and a relogin asks for the new epoch.
func TestExchangeSequenceReset(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(200)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n != 1 {
			return false // the relogin (epoch 5, from 101) streams on
		}
		ex.stream(c, 1, 100)
		c.Write(wire.AppendSequenceReset(nil, wire.SequenceReset{Epoch: 5, NextSeq: 1}, 1))
		ex.stream(c, 1, 100)
		return true // and hangs up
	}
	r, _ := startRoot(t, testConfig(t, ex))
	child := dialChild(t, r.Addr(), 1)
	if err := child.readToEpoch(5, 150, ioTimeout); err != nil {
		t.Fatal(err)
	}
	if r.Epoch() != 5 || testutil.ToFloat64(r.Metrics().EpochChanges) != 1 {
		t.Fatalf("root at epoch %d, %v changes", r.Epoch(), testutil.ToFloat64(r.Metrics().EpochChanges))
	}
	<-ex.logons
	if lg := <-ex.logons; lg.Epoch != 5 || lg.StartSeq != 101 {
		t.Fatalf("relogin %+v, want epoch 5 from 101", lg)
	}
	// A child asking for the current epoch (Hello epoch 0) is told which it
	// is, then streamed from its seq.
	late := dialChild(t, r.Addr(), 0)
	late.send(wire.AppendHello(nil, wire.Hello{Epoch: 0, FromSeq: 7, Name: "late"}))
	typ, p, err := late.frame(ioTimeout)
	if err != nil || typ != wire.RelayReset || wire.ParseReset(p) != (wire.Reset{Epoch: 5, Seq: 7}) {
		t.Fatalf("hello for the current epoch: %q %+v %v", typ, p, err)
	}
	late.epoch, late.next = 5, 7
	if err := late.readToEpoch(5, 150, ioTimeout); err != nil {
		t.Fatal(err)
	}
	// An epoch nobody holds: an older one is moved on to the ring's (told
	// where it ended: before the seq it asked for), a later one is told
	// the root is behind it.
	old := dialChild(t, r.Addr(), 0)
	old.send(wire.AppendHello(nil, wire.Hello{Epoch: 3, FromSeq: 9, Name: "old"}))
	typ, p, err = old.frame(ioTimeout)
	if err != nil || typ != wire.RelayReset || wire.ParseReset(p) != (wire.Reset{Epoch: 5, Seq: 1, Prev: 3, PrevLast: 8}) {
		t.Fatalf("hello for epoch 3: %q %+v %v", typ, wire.ParseReset(p), err)
	}
	future := dialChild(t, r.Addr(), 0)
	future.send(wire.AppendHello(nil, wire.Hello{Epoch: 99, FromSeq: 1, Name: "future"}))
	if e, err := future.expectError(ioTimeout); err != nil || e.Code != wire.CodeSeqFuture || wire.PosEpoch(e.Seq) != 5 {
		t.Fatalf("hello for epoch 99: %+v %v", e, err)
	}
}

// TestExchangeBadResets: resets that do not start a later epoch, and a
// malformed one, each end the session with a clear error; what was received
// stays, the root logs in again where it was, and children get every item.
// An exchange that answers a logon with an older epoch is refused.
func TestExchangeBadResets(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(400)
	bad := [][]byte{
		wire.AppendSequenceReset(nil, wire.SequenceReset{Epoch: 0, NextSeq: 1}, 1),       // not a later epoch
		wire.AppendSequenceReset(nil, wire.SequenceReset{Epoch: 9, NextSeq: 0}, 1),       // seq 0
		wire.AppendSequenceReset(nil, wire.SequenceReset{Epoch: 9, NextSeq: 1 << 40}, 1), // beyond an epoch
		wire.AppendFeedFrame(nil, 0, 1, wire.TypeSequenceReset, make([]byte, 11)),        // malformed
	}
	ex.epochOf = func(n int, lg wire.Logon) uint32 {
		if n == len(bad)+1 {
			return 0 // fine: ours
		}
		return lg.Epoch
	}
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n > len(bad) {
			return false
		}
		ex.stream(c, lg.StartSeq, lg.StartSeq+99)
		c.Write(bad[n-1])
		ex.sleep(time.Second) // the root must hang up, not us
		return true
	}
	r, logs := startRootLogged(t, ex)
	child := dialChild(t, r.Addr(), 1)
	if err := child.readTo(400, ioTimeout); err != nil {
		t.Fatal(err)
	}
	bi := r.Metrics().BadInput
	if got := testutil.ToFloat64(bi.WithLabelValues("reset")); got != 3 {
		t.Errorf("bad resets %v, want 3", got)
	}
	if got := testutil.ToFloat64(bi.WithLabelValues("truncated")); got != 1 {
		t.Errorf("malformed resets %v, want 1", got)
	}
	if out := logs.String(); !strings.Contains(out, "sequence reset to epoch 0 seq 1, not after ours (epoch 0, last seq 100)") {
		t.Errorf("no clear line for the first bad reset:\n%s", out)
	}
	if r.Epoch() != 0 || r.Head() != 400 {
		t.Fatalf("root at epoch %d head %d", r.Epoch(), r.Head())
	}
}

// TestExchangeEpochBackwards: an exchange whose logon reply names an epoch
// older than the root's is refused (bad input "epoch"), again at each
// relogin, and nothing is taken from it.
func TestExchangeEpochBackwards(t *testing.T) {
	ex := newFakeExchange(t)
	ex.publish(100)
	ex.script = func(n int, c net.Conn, lg wire.Logon) bool {
		if n != 1 {
			return false
		}
		ex.stream(c, 1, 50)
		c.Write(wire.AppendSequenceReset(nil, wire.SequenceReset{Epoch: 8, NextSeq: 1}, 1))
		ex.stream(c, 1, 50)
		return true
	}
	ex.epochOf = func(n int, lg wire.Logon) uint32 {
		if n == 1 {
			return lg.Epoch
		}
		return 7 // older than 8
	}
	r, logs := startRootLogged(t, ex)
	waitFor(t, "two refused logons", func() bool { return testutil.ToFloat64(r.Metrics().BadInput.WithLabelValues("epoch")) >= 2 })
	if r.Epoch() != 8 || r.Head() != 50 {
		t.Fatalf("root at epoch %d head %d, want 8 and 50", r.Epoch(), r.Head())
	}
	if out := logs.String(); !strings.Contains(out, "exchange serves epoch 7, older than ours (8, at seq 50)") {
		t.Errorf("no clear line:\n%s", out)
	}
}

// TestChildBeforeFirstItem: a child that says Hello (seq 1 of the current
// epoch) to a root with no store before the root has ever had an item
// gets the exchange's first epoch from seq 1 when it comes, not seq_gone.
func TestChildBeforeFirstItem(t *testing.T) {
	ex := newFakeExchange(t)
	hello := make(chan struct{})
	ex.epochOf = func(int, wire.Logon) uint32 { <-hello; return 7 } // the logon waits for the child
	r, _ := startRoot(t, testConfig(t, ex))
	c := dialChild(t, r.Addr(), 1)
	waitFor(t, "the child's hello", func() bool { return testutil.ToFloat64(r.Metrics().Children) == 1 })
	close(hello)
	ex.publish(300)
	if err := c.readToEpoch(7, 300, ioTimeout); err != nil {
		t.Fatal(err)
	}
}
