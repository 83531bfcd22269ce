package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	subclient "tickrelay/child/client"
	"tickrelay/internal/daemontest"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startChild runs a child against root until the test ends.
func startChild(t *testing.T, root *fakeRoot, mod func(*Config)) *Child {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Name = []string{root.addr()}, "127.0.0.1:0", "t"
	cfg.Loops = 2
	cfg.Logger = testLogger(t)
	cfg.Registerer = prometheus.NewRegistry()
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 100*time.Millisecond
	cfg.ClockInterval = 50 * time.Millisecond
	cfg.IdleTimeout = 2 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	ch, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "child", ch)
	return ch
}

func dial(t *testing.T, ch *Child) *subclient.Client {
	t.Helper()
	c, err := subclient.Dial(t.Context(), ch.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// waitSeq waits until the child has received seq.
func waitSeq(t *testing.T, ch *Child, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ch.LastSeq() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("child at seq %d, want %d", ch.LastSeq(), seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expect returns the seqs in (from, to] whose symbol is in syms ("*" = all).
// subscribed reads a client's lines after its SUB/RESUME: it returns the
// seq of each OK (by symbol) and the frames that follow them, checking each
// frame decodes to the message the root sent; it stops after a frame with
// seq last.
type reader struct {
	t      *testing.T
	c      *subclient.Client
	oks    map[string]uint64
	frames []uint64 // live frames, after the first OK
	images []uint64 // frames before the first OK
	errs   []string
}

func newReader(t *testing.T, c *subclient.Client) *reader {
	return &reader{t: t, c: c, oks: map[string]uint64{}}
}

func (r *reader) untilOKs(n int) error {
	for len(r.oks) < n {
		if err := r.step(); err != nil {
			return err
		}
	}
	return nil
}

// subAll dials ch, subscribes to "*" and reads up to its OK.
func subAll(t *testing.T, ch *Child) *reader {
	t.Helper()
	r := newReader(t, dial(t, ch))
	r.c.Sub("*")
	if err := r.untilOKs(1); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *reader) untilSeq(last uint64) error {
	for len(r.frames) == 0 || r.frames[len(r.frames)-1] < last {
		if err := r.step(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) step() error {
	ev, err := r.c.Next()
	if err != nil {
		return err
	}
	switch ev.Kind {
	case wire.LineFrame:
		want := feedtest.Msg(ev.Seq)
		if ev.Msg != want && len(r.oks) > 0 {
			return fmt.Errorf("seq %d: got %+v, want %+v", ev.Seq, ev.Msg.Type, want.Type)
		}
		if ev.Stamps.ChildSend == 0 || ev.Stamps.ChildRecv == 0 || ev.Stamps.ChildSend < ev.Stamps.ChildRecv {
			return fmt.Errorf("seq %d: bad child stamps %+v", ev.Seq, ev.Stamps)
		}
		if len(r.oks) == 0 {
			r.images = append(r.images, ev.Seq)
		} else {
			r.frames = append(r.frames, ev.Seq)
		}
	case wire.LineOK:
		verb, sym, seq, err := ev.OK()
		if err != nil {
			return err
		}
		if verb == wire.CmdResume {
			sym = "RESUME"
		}
		r.oks[sym] = seq
	case wire.LineErr:
		r.errs = append(r.errs, string(ev.Line))
		return fmt.Errorf("%s", ev.Line)
	}
	return nil
}

func TestFanoutBySymbol(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, nil)
	a, b, all := dial(t, ch), dial(t, ch), dial(t, ch)
	a.Sub("00001")
	b.Sub("2", "00003") // "2" is canonicalized to 00002
	all.Sub("*")
	ra, rb, rall := newReader(t, a), newReader(t, b), newReader(t, all)
	for _, r := range []*reader{ra, rall} {
		if err := r.untilOKs(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := rb.untilOKs(2); err != nil {
		t.Fatal(err)
	}
	if rb.oks["00002"] != 0 {
		t.Fatalf("OK SUB seq %d before any data", rb.oks["00002"])
	}
	root.publish(300)
	for _, c := range []struct {
		r    *reader
		syms []string
	}{{ra, []string{"00001"}}, {rb, []string{"00002", "00003"}}, {rall, []string{"*"}}} {
		want := feedtest.Seqs(0, 300, c.syms...)
		if err := c.r.untilSeq(want[len(want)-1]); err != nil {
			t.Fatal(c.syms, err)
		}
		if !slices.Equal(c.r.frames, want) {
			t.Fatalf("%v got %v\nwant %v", c.syms, c.r.frames, want)
		}
	}
	// Nothing extra: a PING's PONG comes next.
	a.Ping()
	ev, err := a.Next()
	if err != nil || ev.Kind != wire.LinePong {
		t.Fatalf("after frames: %v %q", err, ev.Line)
	}
	if off, bound, ok := ch.ClockOffset(); ok && (bound < 0 || off > int64(time.Second) || off < -int64(time.Second)) {
		t.Errorf("clock offset %d bound %d", off, bound)
	}
}

// TestSubImageThenLive subscribes while the root publishes: the image has
// seqs <= the OK seq, the live stream every update > it, no gap, no dup.
func TestSubImageThenLive(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.Loops = 1 })
	root.publish(200)
	waitSeq(t, ch, 200)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keep publishing during the SUBs
		defer wg.Done()
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			default:
			}
			root.publish(5)
			time.Sleep(time.Millisecond)
		}
	}()
	var clients []*reader
	for i := 0; i < 10; i++ {
		c := dial(t, ch)
		c.Sub(fmt.Sprintf("%05d", i%feedtest.Symbols+1))
		clients = append(clients, newReader(t, c))
		time.Sleep(3 * time.Millisecond)
	}
	wg.Wait()
	close(stop)
	root.mu.Lock()
	head := root.head
	root.mu.Unlock()
	for i, r := range clients {
		sym := fmt.Sprintf("%05d", i%feedtest.Symbols+1)
		if err := r.untilOKs(1); err != nil {
			t.Fatal(err)
		}
		ok := r.oks[sym]
		if len(r.images) == 0 {
			t.Errorf("%s: no image", sym)
		}
		for _, s := range r.images {
			if s > ok {
				t.Errorf("%s: image seq %d > OK seq %d", sym, s, ok)
			}
		}
		want := feedtest.Seqs(ok, head, sym)
		if err := r.untilSeq(want[len(want)-1]); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.frames, want) {
			t.Fatalf("%s after OK %d: got %v\nwant %v", sym, ok, r.frames, want)
		}
	}
}

// imageOf reads c's lines up to its nOK-th OK SUB and returns the frames
// before them (the images, the feed being still) by symbol, and the OKs' seqs.
func imageOf(t *testing.T, c *subclient.Client, nOK int) (map[string][]wire.Msg, []uint64) {
	t.Helper()
	img := map[string][]wire.Msg{}
	var oks []uint64
	for len(oks) < nOK {
		ev, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind {
		case wire.LineOK:
			_, _, seq, _ := ev.OK()
			oks = append(oks, seq)
		case wire.LineFrame:
			sym := string(wire.AppendSymbol(nil, ev.Msg.Security))
			img[sym] = append(img[sym], ev.Msg)
		default:
			t.Fatalf("unexpected %q", ev.Line)
		}
	}
	return img, oks
}

// TestSubAllImage: SUB * starts with the image of every symbol, the same
// frames a SUB of each symbol by name gives, then "OK SUB * P" and every
// update after P.
func TestSubAllImage(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, nil)
	root.publish(500)
	waitSeq(t, ch, 500)
	star, named, both := dial(t, ch), dial(t, ch), dial(t, ch)
	star.Sub("*")
	named.Sub(allSymbols()...)
	both.Sub("*", "00005") // one image of 00005, not two
	starImg, starOK := imageOf(t, star, 1)
	namedImg, namedOKs := imageOf(t, named, feedtest.Symbols)
	if bothImg, _ := imageOf(t, both, 2); !maps.EqualFunc(bothImg, starImg, slices.Equal) {
		t.Fatalf("SUB * 00005 imaged 00005 in %d frames, SUB * in %d (or others differ)", len(bothImg["00005"]), len(starImg["00005"]))
	}
	if starOK[0] != 500 || slices.ContainsFunc(namedOKs, func(s uint64) bool { return s != 500 }) {
		t.Fatalf("OK seqs: * %v, by name %v; want 500", starOK, namedOKs)
	}
	if len(starImg) != feedtest.Symbols {
		t.Fatalf("SUB * imaged %d symbols, want %d", len(starImg), feedtest.Symbols)
	}
	for sym, want := range namedImg {
		if !slices.Equal(starImg[sym], want) {
			t.Fatalf("%s: SUB * image %d frames, SUB %s %d frames, or they differ", sym, len(starImg[sym]), sym, len(want))
		}
	}
	r := newReader(t, star)
	r.oks["*"] = 500 // read above
	root.publish(100)
	if err := r.untilSeq(600); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.frames, feedtest.Seqs(500, 600, "*")) {
		t.Fatalf("after OK SUB * 500: %v", r.frames)
	}
}

// TestSubAllImageOverMaxPending: a SUB * image larger than MaxPending does
// not make its client slow (the reply it asked for has that grace); the
// client reads it, then the live updates, and is never cut off.
func TestSubAllImageOverMaxPending(t *testing.T) {
	const symbols = 9999 // 4 kinds each (not a multiple of 4): an image of ~6 MB, more than a socket takes at once
	manySyms := func(seq uint64) []byte {
		m := feedtest.Msg(seq)
		m.Security = uint32(seq%symbols) + 1
		f, _ := wire.AppendMsgFrame(nil, seq, int64(seq)*1000+1_700_000_000_000_000_000, &m)
		return f[wire.FeedLenSize:]
	}
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.body = manySyms })
	ch := startChild(t, root, func(c *Config) { c.MaxPending = 64 << 10 })
	root.publish(4 * symbols)
	waitSeq(t, ch, 4*symbols)
	c := dialTinyWindow(t, ch)
	c.Sub("*")
	img, oks := imageOf(t, c, 1)
	var frames, bytes int
	for _, msgs := range img {
		frames += len(msgs)
	}
	bytes = int(testutil.ToFloat64(ch.Metrics().BytesOut))
	if len(img) != symbols || oks[0] != 4*symbols || bytes < 4<<20 {
		t.Fatalf("image of %d symbols (%d frames, %d bytes out), OK at %v; want %d symbols, OK at %d, over 4 MiB", len(img), frames, bytes, oks, symbols, 4*symbols)
	}
	root.publish(100)
	for seq := uint64(0); seq < 4*symbols+100; {
		ev, err := c.Next()
		if err != nil {
			t.Fatalf("after the image, at seq %d: %v", seq, err)
		}
		if ev.Kind != wire.LineFrame || ev.Seq != max(seq, 4*symbols)+1 {
			t.Fatalf("after the image: %q, want the frame of seq %d", ev.Line, max(seq, 4*symbols)+1)
		}
		seq = ev.Seq
	}
	if n := testutil.ToFloat64(ch.Metrics().SlowDisconnect); n != 0 {
		t.Fatalf("%v slow disconnects", n)
	}
}

func TestResume(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.HistorySize = 64 })
	root.publish(100)
	waitSeq(t, ch, 100)
	c := dial(t, ch)
	c.Resume(60, "00001", "00002")
	r := newReader(t, c)
	if err := r.untilOKs(1); err != nil {
		t.Fatal(err)
	}
	if r.oks["RESUME"] != 60 {
		t.Fatalf("OK RESUME %d", r.oks["RESUME"])
	}
	root.publish(100)
	want := feedtest.Seqs(59, 200, "00001", "00002")
	if err := r.untilSeq(want[len(want)-1]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.frames, want) {
		t.Fatalf("got %v\nwant %v", r.frames, want)
	}
	// Seq 10 is older than the 64 frames held.
	g := dial(t, ch)
	g.Resume(10, "*")
	ev, err := g.Next()
	if err != nil || ev.Kind != wire.LineErr || !strings.HasPrefix(string(ev.Line), "ERR GONE") {
		t.Fatalf("resume 10: %v %q", err, ev.Line)
	}
}

func TestManyClients(t *testing.T) {
	root := newFakeRoot(t)
	manyClients(t, root, startChild(t, root, func(c *Config) { c.Loops = 4 }))
}

// TestWritePaths: every client gets exactly its frames, and a client that
// stops reading is cut, whichever path the loops write clients with
// (io_uring where this kernel allows it; CI containers may refuse it).
func TestWritePaths(t *testing.T) {
	for _, w := range []string{WritesSyscall, WritesUring} {
		t.Run(w, func(t *testing.T) {
			if _, _, err := writePath(w); err != nil {
				t.Skip(err)
			}
			mod := func(c *Config) { c.Loops, c.Writes = 4, w }
			root := newFakeRoot(t)
			ch := startChild(t, root, mod)
			if ch.writes != w {
				t.Fatalf("writes %q, want %q", ch.writes, w)
			}
			manyClients(t, root, ch)
			root = newFakeRoot(t)
			slowClient(t, root, startChild(t, root, func(c *Config) { mod(c); c.MaxPending = 512 << 10 }))
			if w == WritesUring && testutil.ToFloat64(ch.Metrics().WriteSubmits) == 0 {
				t.Fatal("no io_uring submissions")
			}
		})
	}
}

func manyClients(t *testing.T, root *fakeRoot, ch *Child) {
	const n = 300
	rng := rand.New(rand.NewPCG(1, 2))
	type sub struct {
		r    *reader
		syms []string
	}
	subs := make([]sub, n)
	for i := range subs {
		c := dial(t, ch)
		var syms []string
		if i%50 == 0 {
			syms = []string{"*"}
		} else {
			for k := 0; k < 1+rng.IntN(3); k++ {
				s := fmt.Sprintf("%05d", 1+rng.IntN(feedtest.Symbols))
				if !slices.Contains(syms, s) {
					syms = append(syms, s)
				}
			}
		}
		c.Sub(syms...)
		subs[i] = sub{newReader(t, c), syms}
	}
	for _, s := range subs {
		if err := s.r.untilOKs(len(s.syms)); err != nil {
			t.Fatal(err)
		}
	}
	root.publish(1000)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := feedtest.Seqs(0, 1000, s.syms...)
			if err := s.r.untilSeq(want[len(want)-1]); err != nil {
				errs <- err
				return
			}
			if !slices.Equal(s.r.frames, want) {
				errs <- fmt.Errorf("%v: got %d frames, want %d", s.syms, len(s.r.frames), len(want))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(ch.Metrics().Clients); got != n {
		t.Errorf("clients gauge %v, want %d", got, n)
	}
}

// pacedFeed publishes on root, 1000 items at a time, while a "*" client
// reads everything in the background. Publishing waits while that client
// lags by over 2000 frames (~260 KB), far below any slow-client limit of
// the tests, so only a client that does not read can fall behind.
type pacedFeed struct {
	t     *testing.T
	root  *fakeRoot
	fast  *subclient.Client
	rf    *reader
	read  atomic.Uint64 // last seq the fast client got
	done  chan error
	total uint64 // items published
}

func startPacedFeed(t *testing.T, root *fakeRoot, ch *Child) *pacedFeed {
	t.Helper()
	p := &pacedFeed{t: t, root: root, fast: dial(t, ch), done: make(chan error, 1)}
	p.fast.Sub("*")
	p.rf = newReader(t, p.fast)
	if err := p.rf.untilOKs(1); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if err := p.rf.step(); err != nil {
				p.done <- err
				return
			}
			if n := len(p.rf.frames); n > 0 {
				p.read.Store(p.rf.frames[n-1])
			}
		}
	}()
	return p
}

// until publishes until cond holds, however much that takes on this machine.
func (p *pacedFeed) until(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || p.total >= 4_000_000 {
			p.t.Fatalf("%s: not after %d items", what, p.total)
		}
		p.root.publish(1000)
		p.total += 1000
		p.waitRead(max(p.total, 2000) - 2000)
	}
}

func (p *pacedFeed) waitRead(seq uint64) {
	p.t.Helper()
	for p.read.Load() < seq {
		select {
		case err := <-p.done:
			p.t.Fatalf("fast client at seq %d of %d: %v", p.read.Load(), p.total, err)
		case <-time.After(time.Millisecond):
		}
	}
}

// finish waits until the fast client has every item, closes it and checks
// it got each once, in order.
func (p *pacedFeed) finish() {
	p.t.Helper()
	p.waitRead(p.total)
	p.fast.Close()
	<-p.done
	if !slices.Equal(p.rf.frames, feedtest.Seqs(0, p.total, "*")) {
		p.t.Fatalf("fast client: %d frames, want %d", len(p.rf.frames), p.total)
	}
}

// dialTinyWindow connects a client with a 4 KiB receive buffer.
func dialTinyWindow(t *testing.T, ch *Child) *subclient.Client {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.DialContext(t.Context(), "tcp", ch.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := subclient.New(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSlowClient: a client that never reads is disconnected once its
// unsent bytes pass MaxPending; a reading one gets every frame.
func TestSlowClient(t *testing.T) {
	root := newFakeRoot(t)
	// A limit well above what a reading client's socket buffers can lag by
	// in a burst, so only the client that never reads passes it.
	slowClient(t, root, startChild(t, root, func(c *Config) { c.MaxPending = 512 << 10 }))
}

func slowClient(t *testing.T, root *fakeRoot, ch *Child) {
	slow := dialTinyWindow(t, ch)
	slow.Sub("*")
	feed := startPacedFeed(t, root, ch)
	feed.until("slow client disconnected", func() bool { return testutil.ToFloat64(ch.Metrics().SlowDisconnect) > 0 })
	feed.finish()
	if n := testutil.ToFloat64(ch.Metrics().SlowDisconnect); n != 1 {
		t.Fatalf("%v slow disconnects, want 1", n)
	}
	// The slow client's stream ends (EOF or reset) before all frames.
	slow.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, slow.Conn())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("slow client read: %v after %d bytes", err, n)
	}
	t.Logf("slow client disconnected after %d items; it got %d bytes before the close", feed.total, n)
}

func TestBadLines(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.MaxCommandsPerSec = 50 })
	c := dial(t, ch)
	for _, tc := range []struct{ line, want string }{
		{"HOLA world", "ERR BADCMD"},
		{"SUB", "ERR BADARG"},
		{"RESUME x 00001", "ERR BADARG"},
		{"PING", "PONG"},
		{"TIME 42", "TIME 42 "},
		{"UNSUB 00001", "OK UNSUB 00001"},
	} {
		c.SendLine(tc.line)
		ev, err := c.Next()
		if err != nil || !strings.HasPrefix(string(ev.Line), tc.want) {
			t.Fatalf("%q: got %v %q, want %q", tc.line, err, ev.Line, tc.want)
		}
	}
	// Oversized line: closed.
	long := dial(t, ch)
	long.Conn().Write([]byte(strings.Repeat("x", wire.MaxLineLen+10)))
	for {
		ev, err := long.Next()
		if err != nil {
			break // closed
		}
		if !strings.HasPrefix(string(ev.Line), "ERR TOOLONG") {
			t.Fatalf("oversized line: %q", ev.Line)
		}
	}
	// Flood: closed with ERR FLOOD.
	fl := dial(t, ch)
	fl.Conn().Write([]byte(strings.Repeat("PING\n", 100)))
	var sawFlood bool
	for {
		ev, err := fl.Next()
		if err != nil {
			break
		}
		sawFlood = sawFlood || strings.HasPrefix(string(ev.Line), "ERR FLOOD")
	}
	if !sawFlood {
		t.Error("no ERR FLOOD")
	}
	// The first client lives on.
	c.Ping()
	if ev, err := c.Next(); err != nil || ev.Kind != wire.LinePong {
		t.Fatalf("after abuse: %v %q", err, ev.Line)
	}
}

// TestRelayDrop: the root drops the connection mid-stream; the child says
// Hello from last+1 and clients see every seq once.
func TestRelayDrop(t *testing.T) {
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.dropAt = 50 })
	ch := startChild(t, root, nil)
	if h := <-root.hellos; h.FromSeq != 1 || h.Name != "t" {
		t.Fatalf("first hello %+v", h)
	}
	r := subAll(t, ch)
	root.publish(200)
	if h := <-root.hellos; h.FromSeq != 51 {
		t.Fatalf("hello after drop: from %d, want 51", h.FromSeq)
	}
	if err := r.untilSeq(200); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.frames, feedtest.Seqs(0, 200, "*")) {
		t.Fatalf("frames %v", r.frames)
	}
	if testutil.ToFloat64(ch.Metrics().Reconnects) < 1 {
		t.Error("no reconnect counted")
	}
}

// TestRelayGap: the root skips a seq; the child reconnects from it.
func TestRelayGap(t *testing.T) {
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.gapAt = 30 })
	ch := startChild(t, root, nil)
	<-root.hellos
	r := subAll(t, ch)
	root.publish(100)
	if h := <-root.hellos; h.FromSeq != 30 {
		t.Fatalf("hello after gap: from %d, want 30", h.FromSeq)
	}
	if err := r.untilSeq(100); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.frames, feedtest.Seqs(0, 100, "*")) {
		t.Fatalf("frames %v", r.frames)
	}
	if testutil.ToFloat64(ch.Metrics().Gaps) != 1 {
		t.Errorf("gaps %v", testutil.ToFloat64(ch.Metrics().Gaps))
	}
}

// TestSeqGone: the root no longer holds FromSeq; the child restarts from
// the first seq it names.
func TestSeqGone(t *testing.T) {
	t.Run("one root", func(t *testing.T) { testSeqGone(t, false) })
	// With the other root of an A/B pair down, nothing else can deliver
	// the seqs: the line skips as a lone one does.
	t.Run("A/B, B down", func(t *testing.T) { testSeqGone(t, true) })
}

func testSeqGone(t *testing.T, withDownB bool) {
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.oldest, r.head = 100, 150 })
	var b *fakeRoot
	if withDownB {
		b = newFakeRoot(t)
		b.setDown(true)
	}
	ch := startChild(t, root, func(c *Config) {
		if b != nil {
			c.Roots = append(c.Roots, b.addr())
		}
	})
	if h := <-root.hellos; h.FromSeq != 1 {
		t.Fatalf("first hello %+v", h)
	}
	if h := <-root.hellos; h.FromSeq != 100 {
		t.Fatalf("hello after SeqGone: from %d, want 100", h.FromSeq)
	}
	waitSeq(t, ch, 150)
	if got := testutil.ToFloat64(ch.Metrics().LostItems); got != 99 {
		t.Errorf("lost items %v, want 99", got)
	}
	// RESUME before the restart point is gone; after it works.
	c := dial(t, ch)
	c.Resume(50, "*")
	if ev, err := c.Next(); err != nil || !strings.HasPrefix(string(ev.Line), "ERR GONE") {
		t.Fatalf("resume 50: %v %q", err, ev.Line)
	}
	c.Resume(140, "*")
	r := newReader(t, c)
	if err := r.untilSeq(150); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.frames, feedtest.Seqs(139, 150, "*")) {
		t.Fatalf("frames %v", r.frames)
	}
}

// TestIdleTimeout: a root that goes silent (no heartbeat) is dropped and
// the child reconnects from last+1.
func TestIdleTimeout(t *testing.T) {
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.silent, r.head = true, 10 })
	ch := startChild(t, root, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond; c.ClockInterval = time.Hour })
	<-root.hellos
	waitSeq(t, ch, 10)
	select {
	case h := <-root.hellos:
		if h.FromSeq != 11 {
			t.Fatalf("hello after idle: from %d, want 11", h.FromSeq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnect after idle timeout")
	}
}

// TestShutdownDrains: cancelling Run flushes and tells clients.
func TestShutdownDrains(t *testing.T) {
	root := newFakeRoot(t)
	cfg := DefaultConfig()
	cfg.Roots, cfg.Addr, cfg.Loops, cfg.Logger = []string{root.addr()}, "127.0.0.1:0", 2, testLogger(t)
	ch, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ch.Run(ctx) }()
	<-ch.Ready()
	r := subAll(t, ch)
	root.publish(50)
	waitSeq(t, ch, 50)
	cancel()
	for {
		err := r.step()
		if err != nil {
			if !strings.Contains(err.Error(), "ERR SHUTDOWN") {
				t.Fatalf("want ERR SHUTDOWN, got %v", err)
			}
			break
		}
	}
	if !slices.Equal(r.frames, feedtest.Seqs(0, 50, "*")) {
		t.Fatalf("frames before shutdown %v", r.frames)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Roots") {
		t.Fatalf("Validate: %v", err)
	}
}
