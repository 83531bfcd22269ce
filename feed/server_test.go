package feed

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/daemontest"
	"tickrelay/wire"
)

// testConfig is a fast, small server on a free loopback port.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Rate = 0
	cfg.Symbols = 50
	cfg.MaxSeq = 5000
	cfg.Retain = 0
	cfg.Heartbeat = 50 * time.Millisecond
	cfg.LoginTimeout = 2 * time.Second
	return cfg
}

// startServer runs a server until the test ends.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "exchange", s)
	return s
}

// waitPublished waits until the server has generated seq.
func waitPublished(t testing.TB, s *Server, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Published() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("published %d, waited for %d", s.Published(), seq)
		}
		time.Sleep(time.Millisecond)
	}
}

// feedConn is a minimal feed client.
type feedConn struct {
	t  testing.TB
	c  net.Conn
	in *wire.FeedReader
}

func dial(t testing.TB, s *Server) *feedConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return &feedConn{t: t, c: c, in: wire.NewFeedReader(1 << 20)}
}

// next returns the next frame body (valid until the following call) or
// the read error.
func (f *feedConn) next() ([]byte, error) { return f.in.ReadFrame(f.c) }

func (f *feedConn) mustNext() []byte {
	f.t.Helper()
	b, err := f.next()
	if err != nil {
		f.t.Fatalf("read frame: %v", err)
	}
	return b
}

// logon sends a logon and returns the reply.
func (f *feedConn) logon(user, pass string, start uint64) wire.LogonReply {
	f.t.Helper()
	if _, err := f.c.Write(wire.AppendLogon(nil, wire.Logon{User: user, Password: pass, StartSeq: start})); err != nil {
		f.t.Fatal(err)
	}
	return f.reply()
}

func (f *feedConn) reply() wire.LogonReply {
	f.t.Helper()
	r, err := wire.ParseLogonReply(f.mustNext())
	if err != nil {
		f.t.Fatalf("logon reply: %v", err)
	}
	return r
}

// expectClosed reads until EOF (or a reset), failing on any frame.
func (f *feedConn) expectClosed() {
	f.t.Helper()
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := f.next()
	if err == nil {
		f.t.Fatalf("want the connection closed, got a frame of type %d", mustHeader(f.t, b).MsgType)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		f.t.Fatal("connection still open after 5s")
	}
}

func mustHeader(t testing.TB, body []byte) wire.FeedHeader {
	h, err := wire.ParseFeedBody(body)
	if err != nil {
		t.Fatalf("bad body: %v", err)
	}
	return h
}

// expectRange reads frames from..to and checks each against Body.
func (f *feedConn) expectRange(s *Server, from, to uint64) {
	f.t.Helper()
	for seq := from; seq <= to; seq++ {
		b := f.mustNext()
		h := mustHeader(f.t, b)
		if h.MsgType == wire.TypeHeartbeat {
			seq--
			continue
		}
		if h.Seq != seq {
			f.t.Fatalf("got seq %d, want %d", h.Seq, seq)
		}
		want, ok := s.Body(seq)
		if !ok || !bytes.Equal(b, want) {
			f.t.Fatalf("seq %d: body differs from Body(%d) (held %v)", seq, seq, ok)
		}
		var m wire.Msg
		if _, err := wire.DecodeMsg(b, &m); err != nil {
			f.t.Fatalf("seq %d: %v", seq, err)
		}
	}
}

// expectHeartbeat reads a heartbeat announcing next.
func (f *feedConn) expectHeartbeat(next uint64) {
	f.t.Helper()
	b := f.mustNext()
	if h := mustHeader(f.t, b); h.MsgType != wire.TypeHeartbeat {
		f.t.Fatalf("got type %d seq %d, want a heartbeat", h.MsgType, h.Seq)
	}
	if got := wire.HeartbeatNextSeq(b); got != next {
		f.t.Fatalf("heartbeat announces %d, want %d", got, next)
	}
}

func TestServerRetransmitAllThenHeartbeat(t *testing.T) {
	cfg := testConfig()
	s := startServer(t, cfg)
	waitPublished(t, s, cfg.MaxSeq)
	f := dial(t, s)
	if r := f.logon("tickrelay", "tickrelay", 1); r.Status != wire.LogonOK || r.NextSeq != 1 {
		t.Fatalf("logon: %+v", r)
	}
	f.expectRange(s, 1, cfg.MaxSeq)
	f.expectHeartbeat(cfg.MaxSeq + 1)
	f.expectHeartbeat(cfg.MaxSeq + 1)
	if _, ok := s.Body(cfg.MaxSeq + 1); ok {
		t.Error("Body beyond the head reported held")
	}
	if _, ok := s.Body(0); ok {
		t.Error("Body(0) reported held")
	}
}

func TestServerLogonRefused(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSeq = 100
	s := startServer(t, cfg)
	waitPublished(t, s, 100)

	t.Run("bad password", func(t *testing.T) {
		f := dial(t, s)
		r := f.logon("tickrelay", "wrong", 1)
		if r.Status != wire.LogonBadAuth || !strings.Contains(r.Reason, "bad user or password") {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("bad user", func(t *testing.T) {
		f := dial(t, s)
		if r := f.logon("mallory", "tickrelay", 1); r.Status != wire.LogonBadAuth {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("beyond head", func(t *testing.T) {
		f := dial(t, s)
		r := f.logon("tickrelay", "tickrelay", 500)
		if r.Status != wire.LogonUnavailable || r.NextSeq != 101 || !strings.Contains(r.Reason, "beyond the head") {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("garbage frame", func(t *testing.T) {
		f := dial(t, s)
		f.c.Write([]byte{5, 0, 1, 2, 3, 4, 5})
		if r := f.reply(); r.Status != wire.LogonMalformed || r.Reason == "" {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("not a logon", func(t *testing.T) {
		f := dial(t, s)
		f.c.Write(wire.AppendHeartbeat(nil, 1, 0))
		if r := f.reply(); r.Status != wire.LogonMalformed || !strings.Contains(r.Reason, "logon") {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("oversized frame", func(t *testing.T) {
		f := dial(t, s)
		f.c.Write([]byte{0xff, 0xff, 0, 0})
		if r := f.reply(); r.Status != wire.LogonMalformed {
			t.Fatalf("reply %+v", r)
		}
		f.expectClosed()
	})
	t.Run("head plus one is fine", func(t *testing.T) {
		f := dial(t, s)
		if r := f.logon("tickrelay", "tickrelay", 101); r.Status != wire.LogonOK || r.NextSeq != 101 {
			t.Fatalf("reply %+v", r)
		}
		f.expectHeartbeat(101)
	})
	t.Run("zero is the live head", func(t *testing.T) {
		f := dial(t, s)
		if r := f.logon("tickrelay", "tickrelay", 0); r.Status != wire.LogonOK || r.NextSeq != 101 {
			t.Fatalf("reply %+v", r)
		}
		f.expectHeartbeat(101)
	})
}

func TestServerLoginTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.LoginTimeout = 100 * time.Millisecond
	s := startServer(t, cfg)
	f := dial(t, s)
	f.c.Write([]byte{byte(wire.MinFeedBody + 40), 0, 1}) // a partial logon, then silence
	f.expectClosed()
}

func TestServerConcurrentSessions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSeq = 20_000
	s := startServer(t, cfg)
	var wg sync.WaitGroup
	for _, from := range []uint64{1, 7777, 19_999} {
		f := dial(t, s)
		waitPublished(t, s, from-1)
		if r := f.logon("tickrelay", "tickrelay", from); r.Status != wire.LogonOK || r.NextSeq != from {
			t.Fatalf("logon from %d: %+v", from, r)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.expectRange(s, from, cfg.MaxSeq)
			f.expectHeartbeat(cfg.MaxSeq + 1)
		}()
	}
	wg.Wait()
}

func TestServerLiveFromHead(t *testing.T) {
	cfg := testConfig()
	cfg.Rate = 20_000
	cfg.MaxSeq = 0
	s := startServer(t, cfg)
	waitPublished(t, s, 100)
	f := dial(t, s)
	r := f.logon("tickrelay", "tickrelay", 0)
	if r.Status != wire.LogonOK || r.NextSeq < 101 {
		t.Fatalf("logon: %+v", r)
	}
	f.expectRange(s, r.NextSeq, r.NextSeq+3000)
}

func TestServerDropAndResume(t *testing.T) {
	cfg := testConfig()
	cfg.Rate = 20_000
	cfg.MaxSeq = 0
	s := startServer(t, cfg)
	waitPublished(t, s, 1000)
	f := dial(t, s)
	if r := f.logon("tickrelay", "tickrelay", 1); r.Status != wire.LogonOK {
		t.Fatalf("logon: %+v", r)
	}
	f.expectRange(s, 1, 1000)
	s.DropConnections()
	// Whatever was in flight may still arrive; then EOF.
	last := uint64(1000)
	for {
		b, err := f.next()
		if err != nil {
			break
		}
		if h := mustHeader(t, b); h.Seq == last+1 {
			last++
		} else if h.MsgType != wire.TypeHeartbeat {
			t.Fatalf("after drop: seq %d, want %d", h.Seq, last+1)
		}
	}
	g := dial(t, s)
	if r := g.logon("tickrelay", "tickrelay", last+1); r.Status != wire.LogonOK || r.NextSeq != last+1 {
		t.Fatalf("re-logon: %+v", r)
	}
	g.expectRange(s, last+1, last+3000)
}

func TestServerClientCloseEndsSession(t *testing.T) {
	cfg := testConfig()
	s := startServer(t, cfg)
	f := dial(t, s)
	if r := f.logon("tickrelay", "tickrelay", 0); r.Status != wire.LogonOK {
		t.Fatalf("logon: %+v", r)
	}
	f.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Sessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open after the client left", s.Sessions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServerRetention(t *testing.T) {
	cfg := testConfig()
	cfg.Symbols = 10
	cfg.Retain = segMsgs
	cfg.MaxSeq = 6 * segMsgs
	s := startServer(t, cfg)
	waitPublished(t, s, cfg.MaxSeq)
	old := s.Oldest()
	if old <= 1 || cfg.MaxSeq+1-old < cfg.Retain {
		t.Fatalf("oldest %d: want > 1 and at least %d held", old, cfg.Retain)
	}
	if _, ok := s.Body(old - 1); ok {
		t.Errorf("Body(%d) below the oldest reported held", old-1)
	}
	f := dial(t, s)
	r := f.logon("tickrelay", "tickrelay", 1)
	if r.Status != wire.LogonUnavailable || r.NextSeq != old || !strings.Contains(r.Reason, "no longer held") {
		t.Fatalf("logon from 1: %+v", r)
	}
	g := dial(t, s)
	if r := g.logon("tickrelay", "tickrelay", old); r.Status != wire.LogonOK {
		t.Fatalf("logon from oldest: %+v", r)
	}
	g.expectRange(s, old, cfg.MaxSeq)
	g.expectHeartbeat(cfg.MaxSeq + 1)
}

func TestServerStartOnLogonAndPause(t *testing.T) {
	cfg := testConfig()
	cfg.StartOnLogon = true
	cfg.Rate = 50_000
	cfg.MaxSeq = 0
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	s := startServer(t, cfg)
	time.Sleep(50 * time.Millisecond)
	if p := s.Published(); p != 0 {
		t.Fatalf("published %d before any logon", p)
	}
	f := dial(t, s)
	if r := f.logon("tickrelay", "tickrelay", 0); r.Status != wire.LogonOK || r.NextSeq != 1 {
		t.Fatalf("logon: %+v", r)
	}
	f.expectRange(s, 1, 2000)
	s.Pause()
	p := s.Published()
	f.expectRange(s, 2001, p)
	f.expectHeartbeat(p + 1)
	s.Resume()
	f.expectRange(s, p+1, p+100)

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()] += v
		}
	}
	if got["tickrelay_exchange_published_seq"] < float64(p) || got["tickrelay_exchange_sessions"] != 1 ||
		got["tickrelay_exchange_sent_bytes_total"] == 0 || got["tickrelay_exchange_logons_total"] != 1 {
		t.Errorf("metrics: %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for field, mod := range map[string]func(*Config){
		"Addr":         func(c *Config) { c.Addr = "" },
		"User":         func(c *Config) { c.User = strings.Repeat("u", 17) },
		"Rate":         func(c *Config) { c.Rate = -1 },
		"Symbols":      func(c *Config) { c.Symbols = 0 },
		"BurstFor":     func(c *Config) { c.BurstFactor, c.BurstFor = 3, 2*c.BurstEvery },
		"Retain":       func(c *Config) { c.Retain = 10 },
		"Heartbeat":    func(c *Config) { c.Heartbeat = 0 },
		"LoginTimeout": func(c *Config) { c.LoginTimeout = 0 },
	} {
		c := DefaultConfig()
		mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want an error naming it", field, err)
		}
	}
}

// BenchmarkServerStream measures retransmission of a pre-generated history
// to one session over loopback: frames/s and bytes/s as the client reads.
func BenchmarkServerStream(b *testing.B) {
	cfg := testConfig()
	cfg.Symbols = 2000
	cfg.MaxSeq = uint64(b.N) + 2000
	s := startServer(b, cfg)
	waitPublished(b, s, cfg.MaxSeq)
	b.SetBytes(int64(s.hist.bytes.Load() / cfg.MaxSeq))
	b.ReportAllocs()
	f := dial(b, s)
	f.c.SetDeadline(time.Now().Add(5 * time.Minute))
	b.ResetTimer()
	if r := f.logon("tickrelay", "tickrelay", 2001); r.Status != wire.LogonOK {
		b.Fatalf("logon: %+v", r)
	}
	for i := 0; i < b.N; i++ {
		if _, err := f.next(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

func TestLateStamp(t *testing.T) {
	tick := int64(GenTick)
	for _, c := range []struct {
		name           string
		now, due, want int64
	}{
		{"on time", 100, 100, 100},
		{"early", 90, 100, 90},
		{"within a tick", 100 + tick/2, 100, 100 + tick/2},
		{"a tick late", 100 + tick, 100, 100 + tick},
		{"held back", 100 + 50*tick, 100, 100 + tick}, // the 49 ticks of lateness count as latency
	} {
		if got := LateStamp(c.now, c.due); got != c.want {
			t.Errorf("%s: LateStamp(%d, %d) = %d, want %d", c.name, c.now, c.due, got, c.want)
		}
	}
}
