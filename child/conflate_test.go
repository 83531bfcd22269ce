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
	oks    []uint64
	segs   [][]seenFrame // segs[0]: frames before the first OK; segs[i]: after oks[i-1]
	splits []int         // per segment, its frames before ERR CONFLATED (-1: none seen)
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
				l = &symLine{segs: [][]seenFrame{nil}, splits: []int{-1}}
				lines[sym] = l
			}
			l.oks, l.segs, l.splits = append(l.oks, seq), append(l.segs, nil), append(l.splits, -1)
		}
	}
	var conflatedNotices atomic.Int64
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
	var slowLast atomic.Uint64     // highest live seq after a resync OK (0 while resyncing)
	resyncing, resyncs := false, 0 // resyncs: counting one cut short and started again once
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
				resyncing = false
				slowLast.Store(max(slowLast.Load(), seq)) // it has everything up to P
			case wire.LineFrame:
				sym := string(wire.AppendSymbol(nil, ev.Msg.Security))
				l := lines[sym]
				if l == nil {
					l = &symLine{segs: [][]seenFrame{nil}, splits: []int{-1}} // frames before the first OK: an image
					lines[sym] = l
				}
				seg := &l.segs[len(l.segs)-1]
				*seg = append(*seg, seenFrame{ev.Seq, ev.Msg == feedtest.Msg(ev.Seq)})
				if len(l.oks) > 1 && !resyncing {
					slowLast.Store(max(slowLast.Load(), ev.Seq))
				}
			case wire.LineErr:
				if code, _ := ev.Err(); code != wire.ErrCodeConflated {
					slowDone <- fmt.Errorf("unexpected %q", ev.Line)
					return
				}
				// A resync cut short by another conflation starts again:
				// the frames since the last ERR CONFLATED were a part image.
				conflatedNotices.Add(1)
				if !resyncing {
					resyncs++
				}
				for _, l := range lines {
					seg := &l.segs[len(l.segs)-1]
					if resyncing {
						*seg = (*seg)[:l.splits[len(l.segs)-1]]
					}
					l.splits[len(l.segs)-1] = len(*seg)
				}
				resyncing = true
				slowLast.Store(0)
			default:
				slowDone <- fmt.Errorf("unexpected line %q", ev.Line)
				return
			}
		}
	}()
	feed.until("slow client resynced", func() bool { return testutil.ToFloat64(m.SlowResynced) >= 1 })
	feed.root.publish(1000)
	feed.total += 1000
	total := feed.total
	deadline := time.Now().Add(20 * time.Second)
	// Caught up, and no conflation under way (a client that cannot keep up
	// may be conflated again, and resynced each time).
	for slowLast.Load() < total || testutil.ToFloat64(m.SlowResynced) != testutil.ToFloat64(m.SlowConflated) || float64(conflatedNotices.Load()) != testutil.ToFloat64(m.SlowConflated) {
		select {
		case err := <-slowDone:
			t.Fatalf("slow client: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("slow client at seq %d of %d: %d notices, %v conflated, %v resynced", slowLast.Load(), total, conflatedNotices.Load(), testutil.ToFloat64(m.SlowConflated), testutil.ToFloat64(m.SlowResynced))
		}
	}
	slow.Close()
	<-slowDone
	feed.finish()
	if n := testutil.ToFloat64(m.SlowDisconnect); n != 0 {
		t.Fatalf("%v slow disconnects, want 0", n)
	}
	// Per symbol: the subscription's OK at P0 (the feed had not started, so
	// no image before it), then per conflation: updates with no gap or
	// duplicate (up to where the conflation cut them off), ERR CONFLATED,
	// the image (a frame per kept kind, at most) and the resync's OK at P
	// past the conflation; then exactly the updates after the last P.
	notices := resyncs
	got := 0 // updates received, images aside
	for _, sym := range allSymbols() {
		l := lines[sym]
		if l == nil || len(l.oks) != notices+1 || len(l.segs[0]) > 0 {
			t.Fatalf("%s: OKs %v, %d segments, want OK SUB, then %d times updates, image, OK SUB, then updates", sym, l.oks, len(l.segs), notices)
		}
		for i := 1; i < len(l.oks); i++ {
			from, p, split := l.oks[i-1], l.oks[i], l.splits[i]
			if p < conflatedAt {
				t.Fatalf("%s: resync at seq %d, before the conflation at %d", sym, p, conflatedAt)
			}
			if split < 0 {
				t.Fatalf("%s: no ERR CONFLATED before the resync at %d", sym, p)
			}
			backlog, img := l.segs[i][:split], l.segs[i][split:]
			if seqs := live(t, sym, backlog); len(seqs) > 0 && !slices.Equal(seqs, feedtest.Seqs(from, seqs[len(seqs)-1], sym)) {
				t.Fatalf("%s: updates before ERR CONFLATED are not %d.. in order: %v", sym, from+1, seqs)
			}
			// A "*" resync is streamed: the image (as at some P0 <= P), then
			// the updates P0+1..P from the history.
			img, caught := splitImage(t, sym, img, p)
			if len(img)+len(caught) < 1 || len(img) > frames.ImageFrames || slices.ContainsFunc(img, func(f seenFrame) bool { return f.seq > p }) {
				t.Fatalf("%s: image %v, want 1..%d frames at or before %d", sym, img, frames.ImageFrames, p)
			}
			got += len(backlog)
		}
		p := l.oks[len(l.oks)-1]
		after := live(t, sym, l.segs[len(l.segs)-1])
		if want := feedtest.Seqs(p, total, sym); !slices.Equal(after, want) {
			t.Fatalf("%s after resync at %d: %d frames, want %d", sym, p, len(after), len(want))
		}
		got += len(after)
	}
	if notices < 1 {
		t.Fatal("no ERR CONFLATED")
	}
	// What the conflation saved: the updates the client never got.
	if got >= int(total) {
		t.Fatalf("slow client got %d updates of %d: nothing was conflated", got, total)
	}
	t.Logf("conflated at ~%d, %d times, last resynced at %d of %d: %d updates conflated away", conflatedAt, notices, lines[allSymbols()[0]].oks[notices], total, int(total)-got)
}

// splitImage splits a resync's answer for sym, up to its OK at p, into the
// image and the updates after it: the longest tail of live frames that is
// every update of sym from its first to p.
func splitImage(t *testing.T, sym string, seg []seenFrame, p uint64) (img []seenFrame, caught []uint64) {
	t.Helper()
	i := len(seg)
	for i > 0 && seg[i-1].same && (i == len(seg) || seg[i-1].seq < seg[i].seq) {
		i--
	}
	for ; i < len(seg); i++ { // the longest such tail that is whole
		tail := live(t, sym, seg[i:])
		if slices.Equal(tail, feedtest.Seqs(tail[0]-1, p, sym)) {
			return seg[:i], tail
		}
	}
	return seg, nil
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
