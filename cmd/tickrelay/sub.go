package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/wire"
)

func init() {
	commands["sub"] = command{"subscribe to a child and print frames (like `nats sub`), with latency stats", runSub}
}

func runSub(ctx context.Context, args []string) error {
	fs := newFlags("sub")
	addr := fs.String("addr", "127.0.0.1:9200", "child client address")
	subs := fs.String("sub", "*", `symbols, comma-separated ("00001,00005"), or "*" for all`)
	resume := fs.Uint64("resume", 0, "RESUME from this seq instead of SUB (0 = SUB)")
	count := fs.Int("count", 0, "exit after this many frames (0 = run until interrupted)")
	stats := fs.Bool("stats", false, "print frames/s, gaps, duplicates and per-hop latency every -interval and at the end (stderr)")
	interval := fs.Duration("interval", 5*time.Second, "stats period")
	quiet := fs.Bool("quiet", false, "do not print frames")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var syms []string
	for _, s := range strings.Split(*subs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !wire.ValidSymbol([]byte(s)) {
				return fmt.Errorf("-sub: bad symbol %q", s)
			}
			syms = append(syms, string(child.CanonicalSymbol(nil, []byte(s))))
		}
	}
	if len(syms) == 0 {
		return errors.New("-sub: no symbol")
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := client.Dial(dctx, *addr)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	go func() { <-ctx.Done(); c.Close() }()
	if *resume > 0 {
		err = c.Resume(*resume, syms...)
	} else {
		err = c.Sub(syms...)
	}
	if err != nil {
		return err
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	st := newSubStats(syms, *resume)
	next := time.Now().Add(*interval)
	n := 0
	for *count == 0 || n < *count {
		ev, err := c.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				break
			}
			if ev == nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bad frame: %v: %q\n", err, ev.Line)
			continue
		}
		if !*quiet || ev.Kind == wire.LineErr {
			out.Write(ev.Line)
			out.WriteByte('\n')
			if ev.Kind != wire.LineFrame {
				out.Flush()
			}
		}
		switch ev.Kind {
		case wire.LineFrame:
			n++
			st.frame(ev)
		case wire.LineOK:
			st.ok(ev)
		}
		if *stats && ev.Recv >= next.UnixNano() {
			out.Flush()
			st.print(os.Stderr, "interval")
			st.resetInterval()
			next = time.Now().Add(*interval)
		}
	}
	out.Flush()
	if *stats {
		st.resetInterval()
		st.print(os.Stderr, "final")
	}
	return nil
}

// hop names, in the order of the stamps.
var hops = [...]string{"exch->root", "root", "root->child", "child", "child->client", "end-to-end"}

// samples is a bounded latency sample: reservoir sampling past its cap.
type samples struct {
	v []int64
	n int
}

const maxSamples = 1 << 20

func (s *samples) add(x int64) {
	s.n++
	if len(s.v) < maxSamples {
		s.v = append(s.v, x)
	} else if i := rand.IntN(s.n); i < maxSamples {
		s.v[i] = x
	}
}

func (s *samples) quantiles() (p50, p99, mx int64) {
	if len(s.v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s.v)
	q := func(f float64) int64 { return s.v[min(len(s.v)-1, int(f*float64(len(s.v))))] }
	return q(0.50), q(0.99), s.v[len(s.v)-1]
}

// subStats tracks what `tickrelay sub -stats` prints. Frames up to the
// OK seq of their symbol are images (not timed); later ones are live.
type subStats struct {
	okSeq      map[string]uint64 // symbol (or "*") -> OK seq
	all        bool
	last       uint64 // last live seq
	frames     int
	live       int
	gaps, dups int
	start      time.Time
	ivStart    time.Time
	ivFrames   int
	iv, total  [len(hops)]samples
	sym        []byte
}

func newSubStats(syms []string, resume uint64) *subStats {
	s := &subStats{okSeq: map[string]uint64{}, start: time.Now(), ivStart: time.Now()}
	s.all = slices.Contains(syms, wire.AllSymbols)
	if resume > 0 {
		for _, sym := range syms {
			s.okSeq[sym] = resume - 1
		}
		s.last = resume - 1
	}
	return s
}

func (s *subStats) ok(ev *client.Event) {
	verb, sym, seq, err := ev.OK()
	if err != nil || verb != wire.CmdSub {
		return
	}
	s.okSeq[sym] = seq
	if sym == wire.AllSymbols || s.last == 0 {
		s.last = max(s.last, seq)
	}
}

func (s *subStats) frame(ev *client.Event) {
	s.frames++
	s.ivFrames++
	s.sym = wire.AppendSymbol(s.sym[:0], ev.Msg.Security)
	ok, found := s.okSeq[string(s.sym)]
	if a, allFound := s.okSeq[wire.AllSymbols]; allFound && (!found || a > ok) {
		ok, found = a, true
	}
	if !found || ev.Seq <= ok {
		return // image
	}
	s.live++
	switch {
	case ev.Seq <= s.last:
		s.dups++
	case s.all && s.last != 0 && ev.Seq > s.last+1:
		s.gaps++ // only "*" sees every seq
	}
	s.last = max(s.last, ev.Seq)
	t := ev.Stamps
	d := [len(hops)]int64{t.RootRecv - t.ExchSend, t.RootSend - t.RootRecv, t.ChildRecv - t.RootSend,
		t.ChildSend - t.ChildRecv, ev.Recv - t.ChildSend, ev.Recv - t.ExchSend}
	for i, x := range d {
		s.iv[i].add(x)
	}
}

func (s *subStats) resetInterval() {
	for i := range s.iv {
		for _, x := range s.iv[i].v {
			s.total[i].add(x)
		}
		s.iv[i] = samples{v: s.iv[i].v[:0]}
	}
}

func (s *subStats) print(w io.Writer, what string) {
	now := time.Now()
	var set *[len(hops)]samples
	var rate float64
	if what == "final" {
		set, rate = &s.total, float64(s.frames)/now.Sub(s.start).Seconds()
	} else {
		set, rate = &s.iv, float64(s.ivFrames)/now.Sub(s.ivStart).Seconds()
		s.ivStart, s.ivFrames = now, 0
	}
	fmt.Fprintf(w, "%s: %d frames (%d live), %.0f frames/s, last seq %d, gaps %d, duplicates %d\n",
		what, s.frames, s.live, rate, s.last, s.gaps, s.dups)
	for i, h := range hops {
		p50, p99, mx := set[i].quantiles()
		fmt.Fprintf(w, "  %-14s p50 %10s  p99 %10s  max %10s\n", h, time.Duration(p50), time.Duration(p99), time.Duration(mx))
	}
}
