package child

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	subclient "tickrelay/child/client"
	"tickrelay/wire"
)

// The slow-consumer tests run the child over real sockets: clients with a
// 4 KiB receive window that stop reading, read in bursts, or never read.

// drainLines reads c to the end: the seqs of its frames (checking each
// follows the one before: SUB * gets every seq), and its other lines.
func drainLines(t *testing.T, c *subclient.Client) (seqs []uint64, other []string, err error) {
	t.Helper()
	c.Conn().SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		ev, err := c.Next()
		if err != nil {
			return seqs, other, err
		}
		if ev.Kind != wire.LineFrame {
			other = append(other, string(ev.Line))
			continue
		}
		if n := len(seqs); n > 0 && ev.Seq != seqs[n-1]+1 && len(other) > 0 {
			t.Fatalf("seq %d after %d", ev.Seq, seqs[n-1])
		}
		seqs = append(seqs, ev.Seq)
	}
}

// TestSlowCutPromptLastLine: a client that stops reading is cut in the
// flush whose frames take its unsent bytes past MaxPending (within one
// publish step of the limit, not seconds later), and when it reads again
// within SlowLinger it gets whole frames, every seq up to the cut, then
// ERR SLOW as a complete last line, then EOF.
func TestSlowCutPromptLastLine(t *testing.T) {
	root := newFakeRoot(t)
	const limit = 256 << 10
	ch := startChild(t, root, func(c *Config) { c.MaxPending, c.SlowLinger = limit, 20*time.Second })
	slow := dialTinyWindow(t, ch)
	slow.Sub("*")
	// The feed starts once the child has taken the SUB, so the client is
	// owed every seq from 1.
	if r := newReader(t, slow); r.untilOKs(1) != nil || r.oks["*"] != 0 {
		t.Fatalf("SUB * before the feed: %v", r.oks)
	}
	feed := startPacedFeed(t, root, ch)
	feed.until("slow client cut", func() bool { return testutil.ToFloat64(ch.Metrics().SlowDisconnect) > 0 })
	cutAt := feed.total
	feed.finish()

	seqs, other, err := drainLines(t, slow)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read after the cut: %v (want EOF after the last line)", err)
	}
	n := len(other)
	if n != 1 || !strings.HasPrefix(other[n-1], "ERR SLOW unsent bytes ") {
		t.Fatalf("lines other than frames: %q", other)
	}
	last := seqs[len(seqs)-1]
	if seqs[0] != 1 || uint64(len(seqs)) != last {
		t.Fatalf("frames %d..%d, %d of them", seqs[0], last, len(seqs))
	}
	// The cut comes in the flush that passes the limit: what it was owed
	// then is over the limit by at most the frames of that drain (the feed
	// moves in steps of 1000 items; a drain may take several on a loaded
	// machine), and the test sees it up to 2000 items later.
	frameBytes := testutil.ToFloat64(ch.Metrics().BytesOut) / testutil.ToFloat64(ch.Metrics().FramesOut)
	var unsent, lim int
	if _, err := fmt.Sscanf(other[n-1], "ERR SLOW unsent bytes %d over limit %d", &unsent, &lim); err != nil || lim != limit {
		t.Fatalf("last line %q: %v", other[n-1], err)
	}
	owed := cutAt - last
	if float64(unsent) > limit+5000*frameBytes || float64(owed) > limit/frameBytes+6000 {
		t.Fatalf("cut with %d bytes unsent, %d items past its last frame (%d): over the %d bytes limit by more than a publish step", unsent, owed, last, limit)
	}
	t.Logf("cut at item %d, %d items after its last frame %d; last line %q", cutAt, owed, last, other[n-1])
}

// TestSlowStallComesAndGoes: a client that reads in bursts, falling behind
// between them but keeping up on average, is never cut: it catches up from
// the history each time and gets every seq once, in order.
func TestSlowStallComesAndGoes(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.MaxPending = 2 << 20 })
	c := dialTinyWindow(t, ch)
	c.Sub("*")
	if err := newReader(t, c).untilOKs(1); err != nil {
		t.Fatal(err)
	}
	var behind atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watch the gauge: the client must really fall behind
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if testutil.ToFloat64(ch.Metrics().ClientsBehind) > 0 {
				behind.Store(true)
			}
		}
	}()
	type result struct {
		seqs []uint64
		err  error
	}
	done := make(chan result, 1)
	var total atomic.Uint64
	go func() {
		var seqs []uint64
		for {
			time.Sleep(250 * time.Millisecond) // the stall
			c.Conn().SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			for {
				ev, err := c.Next()
				if err != nil {
					if errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "timeout") {
						break
					}
					done <- result{seqs, err}
					return
				}
				if ev.Kind == wire.LineErr {
					done <- result{seqs, errors.New(string(ev.Line))}
					return
				}
				if ev.Kind == wire.LineFrame {
					seqs = append(seqs, ev.Seq)
				}
			}
			if n := total.Load(); n > 0 && len(seqs) > 0 && seqs[len(seqs)-1] == n {
				done <- result{seqs, nil}
				return
			}
		}
	}()
	// ~20k items/s (~2 MB/s) for 3 s: a stall owes ~500 KB, under the limit.
	for range 300 {
		root.publish(200)
		time.Sleep(10 * time.Millisecond)
	}
	total.Store(60000)
	r := <-done
	close(stop)
	wg.Wait()
	if r.err != nil {
		t.Fatalf("bursty client after %d frames: %v", len(r.seqs), r.err)
	}
	for i, s := range r.seqs {
		if s != uint64(i+1) {
			t.Fatalf("frame %d is seq %d", i, s)
		}
	}
	if !behind.Load() {
		t.Fatal("the client never fell behind: the test did not stall it")
	}
	if n := testutil.ToFloat64(ch.Metrics().SlowDisconnect); n != 0 {
		t.Fatalf("%v slow disconnects", n)
	}
}

// TestSlowThousandsCut: 2,000 clients that never read are cut together,
// while a reading client gets every frame; once their SlowLinger is over
// they are all closed, and the child holds nothing of them.
func TestSlowThousandsCut(t *testing.T) {
	const n = 2000
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.MaxPending, c.SlowLinger = 64<<10, 300*time.Millisecond })
	for range n {
		dialTinyWindow(t, ch).Sub("*")
	}
	feed := startPacedFeed(t, root, ch)
	feed.until("all cut", func() bool { return testutil.ToFloat64(ch.Metrics().SlowDisconnect) >= n })
	feed.finish()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(ch.Metrics().Clients) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v clients still open", testutil.ToFloat64(ch.Metrics().Clients))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(ch.Metrics().ClientsBehind); got != 0 {
		t.Fatalf("%v clients still counted behind", got)
	}
}
