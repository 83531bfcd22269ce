package child

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TestStalledLoopStopsRelayReads: while the only event loop is stuck, the
// relay goroutine parses at most maxQueued batches ahead and then stops
// reading the root (the backlog stays in the root, not in this process);
// once the loop runs again every frame reaches the client, in order.
func TestStalledLoopStopsRelayReads(t *testing.T) {
	root := newFakeRoot(t)
	ch := startChild(t, root, func(c *Config) { c.Loops = 1 })
	c := dial(t, ch)
	c.Sub("*")
	r := newReader(t, c)
	if err := r.untilOKs(1); err != nil {
		t.Fatal(err)
	}
	loops := *ch.srv.loops.Load()
	if len(loops) != 1 {
		t.Fatalf("%d loops registered, want 1", len(loops))
	}
	release := make(chan struct{})
	var once sync.Once
	unstick := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstick) // a failing test must not leave the loop stuck
	stuck := make(chan struct{})
	err := loops[0].el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		close(stuck)
		<-release
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	<-stuck
	const n = 20 * maxQueued * 7 // 20 queues' worth of the fake root's 7-item batches
	root.publish(n)
	// The relay parses maxQueued batches, one more it holds waiting for
	// room, and then reads no further.
	limit := uint64((maxQueued + 1) * 7)
	for deadline := time.Now().Add(10 * time.Second); ch.LastSeq() < uint64(maxQueued*7); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("relay at seq %d, never filled the queue", ch.LastSeq())
		}
	}
	time.Sleep(200 * time.Millisecond) // let a reader that ignores the bound run past it
	if got := ch.LastSeq(); got > limit {
		t.Fatalf("relay parsed up to seq %d with the loop stalled, bound %d", got, limit)
	}
	if f := ch.FlushedSeq(); f >= ch.LastSeq() {
		t.Fatalf("FlushedSeq %d with the loop stalled, LastSeq %d", f, ch.LastSeq())
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
