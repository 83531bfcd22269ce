package root

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/root/journal"
	"tickrelay/wire"
)

// smallDisk mounts a tmpfs of size bytes for the test (needs root, as CI
// runs; skipped otherwise) and returns its path.
func smallDisk(t *testing.T, size string) string {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestStoreCatchesUpAfterDiskFull: the journal's disk fills, its commits
// fail and it refuses items while the root goes on relaying. Once space is
// back, the journal takes what it missed from the ring, a part per item and
// per heartbeat of a quiet feed: it holds every item again, in order.
func TestStoreCatchesUpAfterDiskFull(t *testing.T) {
	dir := smallDisk(t, "4m")
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	j := openJournal(t, filepath.Join(dir, "root.journal"), journal.Options{
		SyncPolicy: journal.SyncNone, MaxPendingBytes: 32 << 10, MmapSize: 1 << 20, Logger: cfg.Logger})
	cfg.Store = j
	r, _ := startRoot(t, cfg)
	ex.publish(200)
	waitHead(t, r, 200)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 4096); ; {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	ex.publish(3000)
	waitHead(t, r, 3000)
	if testutil.ToFloat64(r.m.StoreErrors) == 0 {
		t.Fatalf("the journal took all 3000 items on a full disk (last %d)", j.LastSeq())
	}
	t.Logf("disk full: head %d, journal last %d, durable %d", r.Head(), j.LastSeq(), j.DurableSeq())
	os.Remove(filepath.Join(dir, "filler")) // space is back
	// One more item, then a quiet feed: the journal catches up a part per
	// item and per exchange heartbeat.
	ex.publish(3001)
	deadline := time.Now().Add(10 * time.Second)
	for j.LastSeq() != 3001 {
		if time.Now().After(deadline) {
			t.Fatalf("space is back and the feed quiet at 3001, but the journal's last seq is %d", j.LastSeq())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ex.publish(6000)
	waitHead(t, r, 6000)
	deadline = time.Now().Add(10 * time.Second)
	for j.LastSeq() != 6000 {
		if time.Now().After(deadline) {
			t.Fatalf("space is back and the head is 6000, but the journal's last seq is %d", j.LastSeq())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	if err := j.Range(1, func(seq uint64, item []byte) bool {
		if seq != next || string(item[wire.RelayItemHeader:]) != string(testBody(seq)) {
			t.Fatalf("journal item %d: seq %d or its body is wrong", next, seq)
		}
		next++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if next != 6001 {
		t.Fatalf("journal holds 1..%d, want 1..6000", next-1)
	}
}

// TestFreshRootFollowsMovingOldest: a fresh root asks for seq 1, the
// exchange answers Unavailable with its oldest seq 100, and by the retry its
// retention has moved on to 200. A root holding nothing takes the stream
// from 200 rather than asking for 100 forever.
func TestFreshRootFollowsMovingOldest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var oldest atomic.Uint64
	oldest.Store(100)
	logons := make(chan uint64, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				lg, err := readLogon(c)
				if err != nil {
					return
				}
				logons <- lg.StartSeq
				o := oldest.Swap(200) // retention drops a segment meanwhile
				if lg.StartSeq < o {
					c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonUnavailable, NextSeq: o}))
					return
				}
				c.Write(wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonOK, NextSeq: lg.StartSeq}))
				time.Sleep(5 * time.Second)
			}()
		}
	}()
	startRoot(t, testConfig(t, &fakeExchange{ln: ln}))
	deadline := time.After(3 * time.Second)
	var got []uint64
	for {
		select {
		case s := <-logons:
			if got = append(got, s); s >= 200 {
				return
			}
		case <-deadline:
			t.Fatalf("a fresh root (empty ring) logs on from a seq the exchange no longer holds: %v", got)
		}
	}
}

// TestRefillWhileRetentionRuns: a root restarted after its journal's items
// aged past RetainAge refills its ring while the journal's committer deletes
// those items. The ring starts over from what is left; the root starts.
func TestRefillWhileRetentionRuns(t *testing.T) {
	ex := newFakeExchange(t)
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "root.journal")
		opts := journal.Options{SyncPolicy: journal.SyncNone, RetainAge: time.Hour, CommitEvery: time.Millisecond}
		j, err := journal.Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		const n = 400_000
		for seq := uint64(1); seq <= n; seq++ {
			if err := j.Append(seq, 1, testBody(seq)); err != nil { // received long ago
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, ex)
		opts.Logger = cfg.Logger
		j2 := openJournal(t, path, opts)
		cfg.Store = j2
		cfg.RingSize = 1 << 19
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err = r.Run(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: the root did not start: %v", round, err)
		}
		if first, head := r.ring.Bounds(); head != n {
			t.Fatalf("round %d: ring %d..%d, want it to end at %d", round, first, head, n)
		}
	}
}

// TestChildWithoutHello: a connection that sends no Hello within
// HelloTimeout gets Error bad_frame and is closed.
func TestChildWithoutHello(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.HelloTimeout = 200 * time.Millisecond
	r, _ := startRoot(t, cfg)
	fc := dialChild(t, r.Addr(), 0) // no Hello
	start := time.Now()
	e, err := fc.expectError(5 * time.Second)
	if err != nil || e.Code != wire.CodeBadFrame {
		t.Fatalf("got %v, %v; want Error bad_frame (no hello)", e, err)
	}
	if _, _, err := fc.frame(5 * time.Second); err == nil {
		t.Fatal("the connection stayed open after the error")
	}
	t.Logf("closed %v after connecting: %s", time.Since(start), e.Reason)
}

// TestTimeReqWithoutReading: a child that sends clock requests and never
// reads gets replies only up to its outbound limit: the root's memory for
// it stays bounded.
func TestTimeReqWithoutReading(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.MaxBatchBytes, cfg.MaxOutbound = 16<<10, 64<<10
	r, _ := startRoot(t, cfg)
	fc := dialChild(t, r.Addr(), 1)
	var reqs []byte
	for range 10000 {
		reqs = wire.AppendTimeReq(reqs, 1)
	}
	const rounds = 100 // a million requests, ~30 MB of replies unread
	for range rounds {
		fc.send(reqs)
	}
	sent := func() float64 { return testutil.ToFloat64(r.m.BytesSent) }
	deadline := time.Now().Add(10 * time.Second)
	for prev := -1.0; sent() != prev; time.Sleep(100 * time.Millisecond) { // until the root has read them all
		if prev = sent(); time.Now().After(deadline) {
			break
		}
	}
	reply := len(wire.AppendTimeReply(nil, 1, 2, 3))
	if got, all := sent(), float64(rounds*10000*reply); got > all/2 {
		t.Fatalf("root wrote %.0f bytes of replies for a child that reads none (all would be %.0f)", got, all)
	}
}
