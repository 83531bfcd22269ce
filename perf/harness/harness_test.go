package harness

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tickrelay/wire"
)

// countRec counts recorded frames and checks their stamps.
type countRec struct {
	n, bad atomic.Int64
}

func (r *countRec) RecordBatch(key int, st []wire.Stamps, clientRecv, offset int64) {
	for _, s := range st {
		if s.ExchSend <= 0 || clientRecv < s.ExchSend {
			r.bad.Add(1)
		}
	}
	r.n.Add(int64(len(st)))
}

// lineServer stands in for a tickrelay child (the real one is tested in
// child/ and end to end): it answers SUB with an image frame and
// "OK SUB sym seq" per symbol, then sends perConn frames on each connection
// once release is closed.
func lineServer(t *testing.T, perConn int, release chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				cmd, err := wire.ParseCommand(line[:len(line)-1], nil)
				if err != nil {
					c.Write(wire.AppendErr(nil, wire.ErrCodeBadCommand, err.Error()))
					return
				}
				var out []byte
				m := wire.Msg{Type: wire.TypeNominalPrice, Price: 1000}
				for _, s := range cmd.Symbols {
					code, _ := wire.ParseSymbol(s)
					m.Security = code
					out = wire.AppendTextFrame(out, 5, &m, wire.Stamps{ExchSend: 1}) // image: old stamps
					out = wire.AppendOK(out, wire.CmdSub, s, 5, 7)
				}
				c.Write(out)
				<-release
				out = out[:0]
				for i := 0; i < perConn; i++ {
					now := time.Now().UnixNano()
					out = wire.AppendTextFrame(out, uint64(6+i), &m, wire.Stamps{ExchSend: now - 3000, RootRecv: now - 2000,
						RootSend: now - 1500, ChildRecv: now - 1000, ChildSend: now})
				}
				c.Write(out)
				r.ReadByte() // until the harness closes
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHarnessTickrelay(t *testing.T) {
	for _, mode := range []Mode{ModeGoroutines, ModeEpoll} {
		t.Run(string(mode), func(t *testing.T) { testHarnessTickrelay(t, mode) })
	}
}

func testHarnessTickrelay(t *testing.T, mode Mode) {
	release := make(chan struct{})
	const clients, perConn = 40, 500
	addr := lineServer(t, perConn, release)
	rec := &countRec{}
	cfg := DefaultConfig()
	cfg.Addrs, cfg.Clients, cfg.Recorder, cfg.Mode = []string{addr}, clients, rec, mode
	cfg.ReadyTimeout = 10 * time.Second
	cfg.Subscriptions = func(i int) []string { return []string{"00001", string(wire.AppendSymbol(nil, uint32(i)))} }
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	st := h.WaitQuiet(t.Context(), clients*perConn, 5*time.Second)
	if st.Conns != clients || st.Frames != clients*perConn || st.Images != 2*clients || st.BadFrames != 0 || st.ServerErrs != 0 {
		t.Fatalf("stats %+v", st)
	}
	if rec.n.Load() != clients*perConn || rec.bad.Load() != 0 {
		t.Fatalf("recorded %d, bad %d", rec.n.Load(), rec.bad.Load())
	}
	if st.LastSeq != int64(5+perConn) {
		t.Fatalf("last seq %d", st.LastSeq)
	}
	h.Close()
	if h.Stats().Disconnects != 0 {
		t.Fatalf("disconnects counted on Close")
	}
}

func TestHarnessParseAllocs(t *testing.T) {
	for _, proto := range []Protocol{Tickrelay, NATS, Redis} {
		h, err := New(Config{Protocol: proto, Addrs: []string{"x"}, Clients: 1, Subscriptions: func(int) []string { return nil },
			ReadBuffer: 1 << 16, Mode: ModeGoroutines, DialTimeout: time.Second, ReadyTimeout: time.Second, DialConcurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		for i := 0; i < 50; i++ {
			f := textFrame(uint64(i+1), wire.Stamps{ExchSend: 10, ChildSend: 20})
			switch proto {
			case Tickrelay:
				buf = append(buf, f...)
			case NATS:
				buf = append(buf, "MSG t.00700 1 "...)
				buf = appendInt(buf, len(f))
				buf = append(buf, "\r\n"...)
				buf = append(buf, f...)
				buf = append(buf, "\r\n"...)
			case Redis:
				buf = append(buf, "*3\r\n$7\r\nmessage\r\n$7\r\nt.00700\r\n"...)
				buf = appendBulk(buf, string(f))
			}
		}
		c := &conn{}
		c.ready.Store(true)
		st := make([]wire.Stamps, 0, 64)
		var frames int
		allocs := testing.AllocsPerRun(100, func() {
			out, used, err := h.parse(c, buf, st[:0])
			if err != nil || used != len(buf) {
				t.Fatalf("%s: used %d of %d: %v", proto, used, len(buf), err)
			}
			frames = len(out)
		})
		if allocs != 0 || frames != 50 {
			t.Fatalf("%s: %v allocs, %d frames", proto, allocs, frames)
		}
	}
}

func appendInt(b []byte, n int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Addrs, ok.Subscriptions = []string{"a"}, func(int) []string { return nil }
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Config){
		"Protocol": func(c *Config) { c.Protocol = "mqtt" },
		"Addrs":    func(c *Config) { c.Addrs = nil },
		"Clients":  func(c *Config) { c.Clients = 0 },
		"Subs":     func(c *Config) { c.Subscriptions = nil },
		"Buffer":   func(c *Config) { c.ReadBuffer = 10 },
		"Mode":     func(c *Config) { c.Mode = "threads" },
	} {
		c := ok
		f(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkParseNATS(b *testing.B) {
	h, _ := New(Config{Protocol: NATS, Addrs: []string{"x"}, Clients: 1, Subscriptions: func(int) []string { return nil },
		ReadBuffer: 1 << 16, Mode: ModeGoroutines, DialTimeout: time.Second, ReadyTimeout: time.Second, DialConcurrency: 1})
	var buf []byte
	const n = 64
	for i := 0; i < n; i++ {
		f := textFrame(uint64(i+1), wire.Stamps{ExchSend: 10})
		buf = append(buf, "MSG t.00700 1 "...)
		buf = appendInt(buf, len(f))
		buf = append(buf, "\r\n"...)
		buf = append(buf, f...)
		buf = append(buf, "\r\n"...)
	}
	c := &conn{}
	c.ready.Store(true)
	st := make([]wire.Stamps, 0, n)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	iters := 0
	for b.Loop() {
		h.parse(c, buf, st[:0])
		iters++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*n), "ns/frame")
}
