package session

import (
	"strings"
	"time"

	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"tickrelay/child/frames"
	"tickrelay/control"
	"tickrelay/entitle"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// BenchmarkFanoutLoop is one loop's drain of a 64-frame batch to 1000
// subscribers (50 per symbol plus 20 on "*"): arena copy and hand-off.
func BenchmarkFanoutLoop(b *testing.B) {
	for _, subs := range []int{1000} {
		b.Run(fmt.Sprint(subs), func(b *testing.B) {
			c := frames.NewCore(1<<16, 16<<20)
			bt := frames.GetBatch()
			for s := uint64(1); s <= 64; s++ {
				body := feedtest.Body(s)
				it := wire.Item{Seq: s, RootRecv: 5, Body: body}
				c.Apply(bt, &it, 6, 7)
			}
			f := newFanout()
			clients := make([]*Client, subs)
			for i := range clients {
				clients[i] = &Client{}
				if i < 20 {
					f.subscribe(clients[i], 0, nil, true, 0)
					continue
				}
				sym := wire.AppendSymbol(nil, uint32(i%feedtest.Symbols)+1)
				f.subscribe(clients[i], frames.SymbolHash(sym), sym, false, 0)
			}
			drain := func() { // flush without the writes
				for _, cl := range f.dirty {
					f.take(cl)
				}
				f.flushed()
			}
			f.add(bt, 1) // warm: buffers grown
			drain()
			f.frames = 0
			b.ReportAllocs()
			b.SetBytes(int64(len(bt.Buf)))
			b.ResetTimer()
			var copies uint64
			for i := 0; i < b.N; i++ {
				f.add(bt, 1)
				drain()
				copies += f.frames
				f.frames = 0
			}
			b.ReportMetric(float64(copies)/float64(b.N), "copies/op")
		})
	}
}

// BenchmarkLoopFlush is one loop's drain through the session core: a
// 64-frame batch handed to 1000 clients (50 per symbol plus 20 on "*") and
// written out, one Write per client, with the slow-client check. 0 allocs/op.
// "entitled": every client AUTHed, the 20 "*" clients with a grant of half
// the symbols, so each frame is checked against it.
func BenchmarkLoopFlush(b *testing.B) {
	for _, mode := range []string{"open", "entitled", "group"} {
		b.Run(mode, func(b *testing.B) { loopFlush(b, mode) })
	}
}

// loopFlush: "entitled" AUTHs every client; "group" makes the 20 "*"
// clients one queue group (each frame to one of them).
func loopFlush(b *testing.B, mode string) {
	entitled := mode == "entitled"
	cfg := Config{MaxPending: 1 << 30}
	if entitled {
		tab, err := entitle.Parse(strings.NewReader("half half-token-1 1-10\nall all-token-1 *\n"), "bench")
		if err != nil {
			b.Fatal(err)
		}
		cfg.Entitlements, cfg.AuthTimeout = func() *entitle.Table { return tab }, time.Hour
	}
	var submitted []control.Op
	if mode == "group" {
		cfg.Origin, cfg.Submit = "c/0", func(op control.Op) error { submitted = append(submitted, op); return nil }
	}
	r := newRig(&testing.T{}, cfg)
	for i := 0; i < 1000; i++ { // subscribed before the batch: every frame is due
		c := r.open()
		c.keep = false
		sub := "SUB *"
		if mode == "group" {
			sub = "SUB * GROUP g"
		}
		if i >= 20 {
			sub = "SUB " + string(wire.AppendSymbol(nil, uint32(i%feedtest.Symbols)+1))
		}
		if entitled {
			tok := "all-token-1"
			if i < 20 {
				tok = "half-token-1"
			}
			r.input(c, "AUTH "+tok)
		}
		r.input(c, sub)
	}
	seq := control.NewSequencer(1, 100)
	for _, op := range submitted {
		rec, _, _ := seq.Submit(0, op, 0, 0)
		mk := frames.GetBatch()
		mk.Control = &frames.ControlMark{Record: rec}
		r.l.Add(mk, 1)
	}
	r.l.Tick() // the "*" clients level (an empty history): they take the fan-out
	bt := frames.GetBatch()
	r.state.Write(func(c *frames.Core) {
		for s := uint64(1); s <= 64; s++ {
			it := feedtest.Item(s)
			c.Apply(bt, &it, 6, 7)
		}
	})
	r.l.Add(bt, 1) // warm: buffers grown
	r.l.Flush()
	b.ReportAllocs()
	b.SetBytes(int64(len(bt.Buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.l.Add(bt, 1)
		r.l.Flush()
	}
	b.ReportMetric(testutil.ToFloat64(r.l.m.FramesOut)/float64(b.N+1), "copies/op")
}
