package child

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	subclient "tickrelay/child/client"
	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// allSymbols is every symbol of the test feed, named one by one.
func allSymbols() []string {
	var s []string
	for code := uint32(1); code <= feedtest.Symbols; code++ {
		s = append(s, string(wire.AppendSymbol(nil, code)))
	}
	return s
}

// symLine is what one client saw of one symbol: the seq of each OK SUB and
// the frames after each.
type symLine struct {
	oks   []uint64
	segs  [][]seenFrame // segs[0]: frames before the first OK; segs[i]: after oks[i-1]
	split int           // frames of the last segment before ERR CONFLATED (-1: none seen)
}

type seenFrame struct {
	seq  uint64
	same bool // content equals the feed's message of seq (not so for a BK image)
}

// live returns the seqs of seg's frames, checking each is the feed's message.
func live(t *testing.T, sym string, seg []seenFrame) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, f := range seg {
		if !f.same {
			t.Fatalf("%s: seq %d differs from what the root sent", sym, f.seq)
		}
		seqs = append(seqs, f.seq)
	}
	return seqs
}

// TestSlowClientConflated: under SlowPolicy conflate a client that stops
// reading gets no frames instead of being cut off; once it reads its
// backlog it gets the images and OKs of its subscriptions again ("OK SUB
// sym P" per symbol, or one "OK SUB * P"), then every update after P, in
// order. A fast client meanwhile gets everything.
func TestSlowClientConflated(t *testing.T) {
	t.Run("symbols", func(t *testing.T) { testSlowClientConflated(t, allSymbols()) })
	t.Run("*", func(t *testing.T) { testSlowClientConflated(t, []string{wire.AllSymbols}) })
}

func testSlowClientConflated(t *testing.T, subs []string) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) {
		c.MaxPending, c.SlowPolicy, c.SlowTimeout = 64<<10, SlowConflate, time.Minute
		// The kernel's autotuned send buffer gives the resynced client,
		// reading through a 4 KiB window, room to keep up with a feed paced
		// by a fast reader: the test wants one conflation, not several.
		c.ClientSendBuffer = 0
	})
	slow := dialTinyWindow(t, ch)
	slow.Sub(subs...) // every frame either way
	lines := map[string]*symLine{}
	sawOK := func(sym string, seq uint64) {
		syms := []string{sym}
		if sym == wire.AllSymbols {
			syms = allSymbols()
		}
		for _, sym := range syms {
			l := lines[sym]
			if l == nil {
				l = &symLine{segs: [][]seenFrame{nil}, split: -1}
				lines[sym] = l
			}
			l.oks, l.segs = append(l.oks, seq), append(l.segs, nil)
		}
	}
	conflatedNotices := 0
	for range subs { // its OKs, before the feed starts; then it stops reading
		ev, err := slow.Next()
		if err != nil || ev.Kind != wire.LineOK {
			t.Fatalf("slow client's SUB: %v %v", ev, err)
		}
		_, sym, seq, _ := ev.OK()
		sawOK(sym, seq)
	}
	feed := startPacedFeed(t, root, ch)
	m := ch.Metrics()
	feed.until("slow client conflated", func() bool { return testutil.ToFloat64(m.SlowConflated) == 1 })
	conflatedAt := feed.total
	for range 5 { // SUBs while stale change subscriptions only: no image or OK piles up
		slow.Sub(subs...)
	}

	// The slow client now reads: its backlog, then the resync.
	var slowLast atomic.Uint64 // highest live seq after a resync OK
	slowDone := make(chan error, 1)
	go func() {
		for {
			ev, err := slow.Next()
			if err != nil {
				slowDone <- err
				return
			}
			switch ev.Kind {
			case wire.LineOK:
				_, sym, seq, err := ev.OK()
				if err != nil {
					slowDone <- err
					return
				}
				sawOK(sym, seq)
			case wire.LineFrame:
				sym := string(wire.AppendSymbol(nil, ev.Msg.Security))
				l := lines[sym]
				if l == nil {
					l = &symLine{segs: [][]seenFrame{nil}} // frames before the first OK: an image
					lines[sym] = l
				}
				seg := &l.segs[len(l.segs)-1]
				*seg = append(*seg, seenFrame{ev.Seq, ev.Msg == feedtest.Msg(ev.Seq)})
				if len(l.oks) > 1 {
					slowLast.Store(max(slowLast.Load(), ev.Seq))
				}
			case wire.LineErr:
				if code, _ := ev.Err(); code != wire.ErrCodeConflated {
					slowDone <- fmt.Errorf("unexpected %q", ev.Line)
					return
				}
				conflatedNotices++
				for _, l := range lines {
					l.split = len(l.segs[len(l.segs)-1])
				}
			default:
				slowDone <- fmt.Errorf("unexpected line %q", ev.Line)
				return
			}
		}
	}()
	feed.until("slow client resynced", func() bool { return testutil.ToFloat64(m.SlowResynced) == 1 })
	feed.root.publish(1000)
	feed.total += 1000
	total := feed.total
	deadline := time.Now().Add(20 * time.Second)
	for slowLast.Load() < total {
		select {
		case err := <-slowDone:
			t.Fatalf("slow client: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow client at seq %d of %d", slowLast.Load(), total)
		}
	}
	slow.Close()
	<-slowDone
	feed.finish()
	if n := testutil.ToFloat64(m.SlowDisconnect); n != 0 {
		t.Fatalf("%v slow disconnects, want 0", n)
	}
	// Per symbol: the subscription's OK at P0 (the feed had not started, so
	// no image before it), then updates P0+1..C with no gap or duplicate
	// (C where the conflation cut it off), ERR CONFLATED, the image (a frame
	// per kept kind, at most) and the resync's OK at P past the conflation,
	// then exactly the updates after P.
	got := 0 // updates received, images aside
	for _, sym := range allSymbols() {
		l := lines[sym]
		if l == nil || len(l.oks) != 2 || len(l.segs[0]) > 0 {
			t.Fatalf("%s: %+v, want OK SUB, updates, image, OK SUB, updates", sym, l)
		}
		p0, p := l.oks[0], l.oks[1]
		if p < conflatedAt {
			t.Fatalf("%s: resync at seq %d, before the conflation at %d", sym, p, conflatedAt)
		}
		if l.split < 0 {
			t.Fatalf("%s: no ERR CONFLATED before the resync", sym)
		}
		backlog, img := l.segs[1][:l.split], l.segs[1][l.split:]
		if seqs := live(t, sym, backlog); len(seqs) > 0 && !slices.Equal(seqs, feedtest.Seqs(p0, seqs[len(seqs)-1], sym)) {
			t.Fatalf("%s: updates before ERR CONFLATED are not %d.. in order: %v", sym, p0+1, seqs)
		}
		if len(img) < 1 || len(img) > frames.ImageFrames || slices.ContainsFunc(img, func(f seenFrame) bool { return f.seq > p }) {
			t.Fatalf("%s: image %v, want 1..%d frames at or before %d", sym, img, frames.ImageFrames, p)
		}
		after := live(t, sym, l.segs[2])
		if want := feedtest.Seqs(p, total, sym); !slices.Equal(after, want) {
			t.Fatalf("%s after resync at %d: %d frames, want %d", sym, p, len(after), len(want))
		}
		got += len(backlog) + len(after)
	}
	if conflatedNotices != 1 {
		t.Fatalf("%d ERR CONFLATED lines, want 1", conflatedNotices)
	}
	// What the conflation saved: the updates the client never got.
	if got >= int(total) {
		t.Fatalf("slow client got %d updates of %d: nothing was conflated", got, total)
	}
	t.Logf("conflated at ~%d, resynced at %d of %d: %d updates conflated away", conflatedAt, lines[allSymbols()[0]].oks[1], total, int(total)-got)
}

// TestSlowClientConflateTimeout: under conflate clients that never read
// again ("*" or named symbols) are disconnected after SlowTimeout.
func TestSlowClientConflateTimeout(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) {
		c.MaxPending, c.SlowPolicy, c.SlowTimeout = 64<<10, SlowConflate, 300*time.Millisecond
	})
	star := dialTinyWindow(t, ch)
	star.Sub("*")
	named := dialTinyWindow(t, ch)
	named.Sub(allSymbols()...)
	m := ch.Metrics()
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(m.SlowDisconnect) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("slow disconnects %v, conflated %v", testutil.ToFloat64(m.SlowDisconnect), testutil.ToFloat64(m.SlowConflated))
		}
		root.publish(1000)
		time.Sleep(2 * time.Millisecond)
	}
	// A stale client is resynced once its connection holds nothing unsent:
	// the kernel's send buffer may have taken the rest, so one that never
	// reads may be resynced (into that buffer) and conflated again.
	if c, r := testutil.ToFloat64(m.SlowConflated), testutil.ToFloat64(m.SlowResynced); c < 2 || c-r != 2 {
		t.Fatalf("conflated %v (want both clients, each once more per resync), resynced %v", c, r)
	}
	// Both streams end (EOF or reset: ERR SLOW is queued behind what they
	// never read, and a close discards unsent bytes).
	for name, c := range map[string]*subclient.Client{"*": star, "named": named} {
		c.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c.Conn())
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s client: %v after %d bytes", name, err, n)
		}
	}
}

// TestSlowClientConflatedQuietFeed: resync and SlowTimeout do not wait for
// the next item. After the feed stops, a conflated client that reads its
// backlog gets ERR CONFLATED and the images with OK SUB at the last seq,
// and one that never reads is disconnected after SlowTimeout.
func TestSlowClientConflatedQuietFeed(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) {
		c.MaxPending, c.SlowPolicy, c.SlowTimeout = 64<<10, SlowConflate, 3*time.Second
	})
	reader, silent := dialTinyWindow(t, ch), dialTinyWindow(t, ch)
	for _, c := range []*subclient.Client{reader, silent} {
		c.Sub("*")
		if ev, err := c.Next(); err != nil || ev.Kind != wire.LineOK {
			t.Fatalf("SUB *: %v %v", ev, err)
		}
	}
	feed := startPacedFeed(t, root, ch)
	m := ch.Metrics()
	feed.until("both clients conflated", func() bool { return testutil.ToFloat64(m.SlowConflated) == 2 })
	feed.finish() // the feed is quiet from here on

	reader.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	conflated := false
	for {
		ev, err := reader.Next()
		if err != nil {
			t.Fatalf("reader, conflated %v: %v (resynced %v)", conflated, err, testutil.ToFloat64(m.SlowResynced))
		}
		if ev.Kind == wire.LineErr {
			if code, _ := ev.Err(); code != wire.ErrCodeConflated || conflated {
				t.Fatalf("unexpected %q", ev.Line)
			}
			conflated = true
			continue
		}
		if ev.Kind == wire.LineOK {
			_, sym, seq, err := ev.OK()
			if err != nil || !conflated || sym != wire.AllSymbols || seq != feed.total {
				t.Fatalf("%q after ERR CONFLATED %v, want OK SUB * %d", ev.Line, conflated, feed.total)
			}
			break
		}
		if ev.Kind != wire.LineFrame || ev.Seq > feed.total {
			t.Fatalf("unexpected %q", ev.Line)
		}
	}
	// Nothing follows the OK: no item came after it.
	reader.Conn().SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if ev, err := reader.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the resync: %v %v", ev, err)
	}
	// The silent client is cut once stale for SlowTimeout, with no item to
	// trigger a drain; then its stream ends.
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(m.SlowDisconnect) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the silent client was not disconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	silent.Conn().SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := io.Copy(io.Discard, silent.Conn()); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("silent client: %v after %d bytes", err, n)
	}
	if d, r := testutil.ToFloat64(m.SlowDisconnect), testutil.ToFloat64(m.SlowResynced); d != 1 || r != 1 {
		t.Fatalf("slow disconnects %v, resynced %v; want 1 each", d, r)
	}
}
