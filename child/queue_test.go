package child

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/child/frames"
	"tickrelay/wire"
)

// TestStalledLoopStopsRelayReads: while the only event loop is stuck, the
// relay goroutine fills the loop's queue (maxQueued batches of about
// frames.BatchBytes of frames each, merged from many relay frames) and then stops
// reading the root: the backlog stays in the root, not in this process.
// Once the loop runs again every frame reaches the client, in order.
func TestStalledLoopStopsRelayReads(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) {
		c.Loops = 1
		c.MaxPending = 64 << 20 // the whole queue goes out in one flush when the loop resumes
	})
	r := subAll(t, ch)
	loops := *ch.srv.loops.Load()
	if len(loops) != 1 {
		t.Fatalf("%d loops registered, want 1", len(loops))
	}
	l := loops[0]
	release := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstick) // a failing test must not leave the loop stuck
	stuck := make(chan struct{})
	err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		close(stuck)
		<-release
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	<-stuck
	// Several queues' worth: a frame is under 200 bytes, so a batch holds
	// at least frames.BatchBytes/200 items.
	const n = 4 * maxQueued * frames.BatchBytes / 200
	root.publish(n)
	queued := func() (batches, bytes int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, b := range l.q {
			bytes += len(b.Buf)
		}
		return len(l.q), bytes
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if b, _ := queued(); b == maxQueued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay at seq %d, never filled the queue", ch.LastSeq())
		}
	}
	at := ch.LastSeq()
	time.Sleep(200 * time.Millisecond) // let a reader that ignores the bound run past it
	// The relay may hold one more batch, waiting for room, and reads no further.
	if got := ch.LastSeq(); got-at > uint64(frames.BatchBytes) || got >= n {
		t.Fatalf("relay went on parsing with the queue full: seq %d, then %d (published %d)", at, got, n)
	}
	if b, bytes := queued(); b > maxQueued || bytes > maxQueued*(frames.BatchBytes+20*wire.MaxTextFrame) {
		t.Fatalf("queue holds %d batches, %d bytes of frames: bound %d batches of about %d bytes", b, bytes, maxQueued, frames.BatchBytes)
	}
	if f := ch.FlushedSeq(); f >= ch.LastSeq() {
		t.Fatalf("FlushedSeq %d with the loop stalled, LastSeq %d", f, ch.LastSeq())
	}
	// The fake root sends 7-item relay frames; a backlog read at once is
	// merged into larger batches.
	if held := ch.LastSeq() - ch.FlushedSeq(); held <= (maxQueued+1)*7 {
		t.Fatalf("queue holds %d items: relay frames not merged into batches", held)
	}
	unstick()
	if err := r.untilSeq(n); err != nil {
		t.Fatal(err)
	}
	for i, seq := range r.frames {
		if seq != uint64(i+1) {
			t.Fatalf("frame %d is seq %d: want 1..%d in order", i, seq, n)
		}
	}
	if f := ch.FlushedSeq(); f != n {
		t.Fatalf("FlushedSeq %d after every frame arrived, want %d", f, n)
	}
}
