package child

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/child/frames"
	"tickrelay/child/session"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// TestResumeBeforeFirstItem: a child started at FromSeq 1000 holds nothing
// before it, so RESUME 500 is answered ERR GONE, not OK followed by seq 1000
// (500..999 silently missing).
func TestResumeBeforeFirstItem(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.FromSeq = 1000 })
	c := dial(t, ch)
	c.Resume(500, "*")
	ev, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != wire.LineErr || !strings.Contains(string(ev.Line), wire.ErrCodeGone) {
		t.Fatalf("RESUME 500 on a child starting at 1000: got %q, want ERR %s", ev.Line, wire.ErrCodeGone)
	}
}

// TestResumeAfterSkip: once the child skipped seqs its root no longer held
// (SeqGone: 101..999), a RESUME from before the skip is answered ERR GONE,
// also before the first item after the skip arrives.
func TestResumeAfterSkip(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, nil)
	root.publish(100)
	waitSeq(t, ch, 100)
	root.setDown(true)
	root.set(func(r *fakeRoot) { r.oldest = 1000 }) // and nothing from 1000 on yet
	root.setDown(false)
	waitSeq(t, ch, 999)
	for _, from := range []uint64{50, 500} {
		c := dial(t, ch)
		c.Resume(from, "*")
		ev, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != wire.LineErr || !strings.Contains(string(ev.Line), wire.ErrCodeGone) {
			t.Fatalf("RESUME %d after a skip from 101 to 1000: got %q, want ERR %s", from, ev.Line, wire.ErrCodeGone)
		}
	}
}

// historyChild runs a child with a MaxPending of 1 MiB that has applied
// items 1..n, and returns it with its whole history (RESUME 1 *'s answer).
func historyChild(t *testing.T, n uint64) (*Child, []byte) {
	root := newFakeRoot(t)
	root.set(func(r *fakeRoot) { r.batch = 500 })
	ch := startChild(t, root, func(c *Config) { c.MaxPending = 1 << 20 })
	root.publish(n)
	waitSeq(t, ch, n)
	var hist []byte
	ch.state.Read(func(c *frames.Core) { hist, _ = c.AppendHistory(nil, 1, nil, true, 1) })
	return ch, hist
}

// TestPipelinedRepliesBounded: one packet of 200 "RESUME 1 *" lines asks for
// the whole history 200 times from a client that reads nothing for now. Each
// answer is written and counted against MaxPending before the next line
// runs, the answers to one read sharing a grace of session.MaxReadGrace, so the
// client is cut off after some 20 answers instead of the child building
// all 200 (600 MB) in memory.
func TestPipelinedRepliesBounded(t *testing.T) {
	ch, hist := historyChild(t, 20000)
	c := dial(t, ch)
	const lines = 200
	c.Conn().Write([]byte(strings.Repeat("RESUME 1 *\n", lines)))
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(ch.Metrics().SlowDisconnect) == 0 { // read only once the child gave up on it
		if time.Now().After(deadline) {
			t.Fatal("an unread client asking for 600 MB of answers was never cut off")
		}
		time.Sleep(5 * time.Millisecond)
	}
	answers := 0
	for {
		ev, err := c.Next()
		if err != nil {
			break // the child closed it
		}
		if ev.Kind == wire.LineOK {
			answers++
		}
	}
	// The grace, MaxPending and the socket buffers (a few MB) hold this many.
	if most := (session.MaxReadGrace+ch.cfg.MaxPending+16<<20)/len(hist) + 1; answers > most {
		t.Fatalf("an unread client got %d of %d pipelined RESUME answers (%d B each) before it was cut off; want at most %d", answers, lines, len(hist), most)
	}
	t.Logf("%d answers before the cut", answers)
}

// TestPipelinedRepliesOfReadingClient: a client that sends one RESUME per
// symbol in one write and then (a little later) reads every answer is not
// cut off, although the answers together pass MaxPending.
func TestPipelinedRepliesOfReadingClient(t *testing.T) {
	ch, hist := historyChild(t, 100000)
	c := dial(t, ch)
	var b strings.Builder
	for s := 1; s <= feedtest.Symbols; s++ {
		fmt.Fprintf(&b, "RESUME 1 %05d\n", s)
	}
	b.WriteString("PING\n")
	c.Conn().Write([]byte(b.String()))
	time.Sleep(200 * time.Millisecond) // the answers are all queued before the client reads
	oks, frames := 0, 0
	for pong := false; !pong; {
		ev, err := c.Next()
		if err != nil {
			t.Fatalf("after %d OKs and %d frames: %v", oks, frames, err)
		}
		switch ev.Kind {
		case wire.LineOK:
			oks++
		case wire.LineFrame:
			frames++
		case wire.LineErr:
			t.Fatalf("after %d OKs and %d frames: %s", oks, frames, ev.Line)
		case wire.LinePong:
			pong = true
		}
	}
	if oks != feedtest.Symbols {
		t.Fatalf("%d OKs, want %d", oks, feedtest.Symbols)
	}
	if want := bytes.Count(hist, []byte("\n")); frames != want {
		t.Fatalf("%d frames for RESUME 1 of every symbol, want the history's %d", frames, want)
	}
}

// fedChild runs a child (default config) on a fake root that has published
// items 1..n, and waits until the child applied them.
func fedChild(t *testing.T, n uint64) (*fakeRoot, *Child) {
	root := newFakeRoot(t)
	ch := startChild(t, root, nil)
	root.publish(n)
	waitSeq(t, ch, n)
	return root, ch
}

// TestSubSameSymbolTwice: a symbol named twice in one SUB (as 5 and 00005)
// is answered once: one image, one OK.
func TestSubSameSymbolTwice(t *testing.T) {
	_, ch := fedChild(t, 200)
	c := dial(t, ch)
	c.SendLine("SUB 5 00005 5")
	c.Ping()
	seen := map[uint64]bool{}
	oks := 0
	for {
		ev, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Kind {
		case wire.LineOK:
			oks++
		case wire.LineFrame:
			if seen[ev.Seq] {
				t.Fatalf("image frame seq %d sent twice", ev.Seq)
			}
			seen[ev.Seq] = true
		}
		if ev.Kind == wire.LinePong {
			break
		}
	}
	if oks != 1 || len(seen) == 0 {
		t.Fatalf("%d OKs and %d image frames, want 1 OK and the image", oks, len(seen))
	}
}

// TestSubOnStar: a client on "*" that subscribes to a symbol by name gets
// its OK but no image: it has the symbol's state, and an image would repeat
// frames it already got.
func TestSubOnStar(t *testing.T) {
	_, ch := fedChild(t, 200)
	rd := subAll(t, ch)
	rd.c.Sub("00005")
	rd.c.Ping()
	for {
		ev, err := rd.c.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == wire.LineFrame {
			t.Fatalf("a client on * got frame %d again after SUB 00005", ev.Seq)
		}
		if ev.Kind == wire.LinePong {
			return
		}
	}
}

// TestResumeFutureStarKeepsNamed: a client on 00001 that sends RESUME of a
// future seq for "*" keeps getting 00001's frames up to that seq: the
// history answered only up to P, so the named subscription is covered only
// to P.
func TestResumeFutureStarKeepsNamed(t *testing.T) {
	root, ch := fedChild(t, 100)
	c := dial(t, ch)
	r := newReader(t, c)
	c.Sub("00001")
	if err := r.untilOKs(1); err != nil {
		t.Fatal(err)
	}
	c.Resume(200, "*")
	if err := r.untilOKs(2); err != nil {
		t.Fatal(err)
	}
	root.publish(200)
	if err := r.untilSeq(300); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, s := range r.frames {
		if feedtest.Sym(s) == "00001" && s < 200 {
			got = append(got, s)
		}
	}
	if want := feedtest.Seqs(100, 199, "00001"); len(got) != len(want) {
		t.Fatalf("00001's frames after RESUME 200 *: got %v, want %v", got, want)
	}
}
