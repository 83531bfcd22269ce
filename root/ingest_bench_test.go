package root

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tickrelay/feed"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

// replayExchange is a raw exchange that replays a window of pre-built feed
// frames (the simulator's market mix) with their seqs patched on the fly, so
// the exchange side costs next to nothing: it logs the root on from its
// StartSeq, waits for go, then writes items up to total as fast as the
// socket takes them.
type replayExchange struct {
	ln     net.Listener
	frames []byte // windowItems frames back to back
	offs   []int  // offset of frame i
	total  uint64
	rate   int // items per second; 0 = as fast as the socket takes them
	start  chan struct{}
}

const windowItems = 1 << 16

func newReplayExchange(tb testing.TB, total uint64, rate int) *replayExchange {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ex := &replayExchange{ln: ln, total: total, rate: rate, start: make(chan struct{})}
	g := feed.NewGenerator(feed.GenConfig{Seed: 1, Symbols: 2000})
	var m wire.Msg
	for i := 0; i < windowItems; i++ {
		g.Next(&m)
		ex.offs = append(ex.offs, len(ex.frames))
		var ok bool
		if ex.frames, ok = wire.AppendMsgFrame(ex.frames, uint64(i+1), int64(i), &m); !ok {
			tb.Fatalf("message %d does not encode", i)
		}
	}
	ex.offs = append(ex.offs, len(ex.frames))
	go ex.serve()
	tb.Cleanup(func() { ln.Close() })
	return ex
}

// avgFrame is the mean frame size of the window.
func (ex *replayExchange) avgFrame() int { return len(ex.frames) / windowItems }

func (ex *replayExchange) serve() {
	for {
		c, err := ex.ln.Accept()
		if err != nil {
			return
		}
		go ex.session(c)
	}
}

func (ex *replayExchange) session(c net.Conn) {
	defer c.Close()
	lg, err := readLogon(c)
	if err != nil {
		return
	}
	<-ex.start
	if _, err := c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonOK, NextSeq: lg.StartSeq})); err != nil {
		return
	}
	out := make([]byte, 0, 512<<10)
	began := time.Now()
	for seq := lg.StartSeq; seq <= ex.total; {
		limit := ex.total
		if ex.rate > 0 { // paced: what is due by now, checked every 500 µs
			due := lg.StartSeq + uint64(time.Since(began).Seconds()*float64(ex.rate))
			if due < seq {
				time.Sleep(500 * time.Microsecond)
				continue
			}
			limit = min(limit, due)
		}
		out = out[:0]
		for ; seq <= limit && len(out) < 256<<10; seq++ {
			i := int((seq - 1) % windowItems)
			at := len(out)
			out = append(out, ex.frames[ex.offs[i]:ex.offs[i+1]]...)
			binary.LittleEndian.PutUint64(out[at+wire.FeedLenSize:], seq)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
	io.Copy(io.Discard, c) // hold the session open until the root goes
}

// BenchmarkRootIngest feeds b.N items through a real root from a raw
// exchange on loopback, with and without the bbolt journal as its Store, at
// the exchange's full speed (rate=max: the root's ceiling) and paced at
// 200k items/s (the load; run it with -benchtime 1000000x for 5 s).
// One op is one item. items/s counts until the ring head reaches b.N and,
// with a journal, every item is committed (Flush), so a journal that falls
// behind shows; flush-ms is that last wait for the disk. cpu-ns/item is the
// whole process's user+system CPU per item (the exchange writer included, the
// same in every case): at 200k items/s, on minus off, times 200k, is the
// share of a core the journal costs.
func BenchmarkRootIngest(b *testing.B) {
	for _, rate := range []int{0, 200_000} {
		for _, tc := range []struct {
			name string
			sync string // "" = no journal
		}{
			{"journal=off", ""},
			{"journal=on/sync=none", journal.SyncNone},
			{"journal=on/sync=always", journal.SyncAlways},
		} {
			name := "rate=max/" + tc.name
			if rate > 0 {
				name = "rate=200k/" + tc.name
			}
			b.Run(name, func(b *testing.B) { benchIngest(b, rate, tc.sync) })
		}
	}
}

func benchIngest(b *testing.B, rate int, sync string) {
	n := uint64(b.N)
	ex := newReplayExchange(b, n, rate)
	cfg := DefaultConfig()
	cfg.ExchangeAddr = ex.ln.Addr().String()
	cfg.Addr = "127.0.0.1:0"
	cfg.RingSize = 1 << 20
	cfg.Loops = 1
	cfg.IdleTimeout = time.Minute
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	var j *journal.Journal
	if sync != "" {
		var err error
		j, err = journal.Open(filepath.Join(b.TempDir(), "bench.journal"), journal.Options{SyncPolicy: sync, Logger: cfg.Logger})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		cfg.Store = j
	}
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-r.Ready()

	b.SetBytes(int64(ex.avgFrame()))
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	close(ex.start)
	for r.Head() < n {
		time.Sleep(200 * time.Microsecond)
	}
	headAt := time.Now()
	if j != nil {
		if err := j.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(headAt).Microseconds())/1000, "flush-ms")
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/el.Seconds(), "items/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/item")
	if j != nil && j.Stats().Stalls > 0 {
		b.ReportMetric(float64(j.Stats().Stalls), "stalls")
	}
}

// cpuTime is the process's user+system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
