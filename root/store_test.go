package root

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tickrelay/root/journal"
	"tickrelay/wire"
)

// The Store beneath the ring in these tests is the real bbolt journal, as
// users run it (no in-memory stand-in).

// openJournal opens the journal file at path for a test root (log it with
// the root's logger: opts.Logger), closed at the test's end.
func openJournal(t *testing.T, path string, opts journal.Options) *journal.Journal {
	t.Helper()
	j, err := journal.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// TestStoreCatchUp: a child older than the ring is served from the journal,
// then handed over to the ring while items keep arriving; once retention has
// dropped the oldest items, a child asking for them gets SeqGone naming the
// oldest one held.
func TestStoreCatchUp(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.RingSize = 256
	// Items 1..499 are stamped two hours before the rest (the root's clock
	// jumps); the journal's retention clock stands still until the test
	// moves it, so retention (1h) deletes nothing before then, and exactly
	// 1..499 after.
	var skew atomic.Int64
	cfg.Now = func() int64 { return time.Now().UnixNano() + skew.Load() }
	t0 := time.Now().UnixNano()
	var jclock atomic.Int64
	jclock.Store(t0)
	j := openJournal(t, filepath.Join(t.TempDir(), "root.journal"), journal.Options{
		SyncPolicy: journal.SyncNone, RetainAge: time.Hour, RetainEvery: time.Hour, Logger: cfg.Logger,
		Now: func() int64 { return jclock.Load() },
	})
	cfg.Store = j
	r, _ := startRoot(t, cfg)
	ex.publish(499)
	waitHead(t, r, 499)
	// Commit 1..499 now, on their own: retention deletes whole blocks of
	// the journal, and a block holding 499 and 500 would keep 1..499 too.
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(2 * time.Hour))
	ex.publish(3000)
	waitHead(t, r, 3000)
	if j.LastSeq() != 3000 {
		t.Fatalf("journal last %d", j.LastSeq())
	}
	a := dialChild(t, r.Addr(), 1)
	b := dialChild(t, r.Addr(), 2000)
	ex.publish(6000) // live items while the children catch up
	if err := a.readTo(6000, ioTimeout); err != nil {
		t.Fatal("child a:", err)
	}
	if err := b.readTo(6000, ioTimeout); err != nil {
		t.Fatal("child b:", err)
	}
	// Retention: the journal no longer has seq 1; the oldest is 500.
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 1 {
		t.Fatalf("journal first %d before retention", j.FirstSeq())
	}
	jclock.Store(t0 + int64(2*time.Hour))
	if n, err := j.Retain(); err != nil || j.FirstSeq() != 500 {
		t.Fatalf("retention deleted %d (%v), first %d; want first 500", n, err, j.FirstSeq())
	}
	c := dialChild(t, r.Addr(), 1)
	e, err := c.expectError(ioTimeout)
	if err != nil || e.Code != wire.CodeSeqGone || e.Seq != 500 {
		t.Fatalf("from 1 with journal [500..]: got %+v, %v; want SeqGone 500", e, err)
	}
	d := dialChild(t, r.Addr(), 500) // the oldest held is still served
	if err := d.readTo(6000, ioTimeout); err != nil {
		t.Fatal("child d:", err)
	}
}

// TestRestartFromStore: a root stopped and started again over the same
// journal file refills its ring and logs in from the journal's last seq + 1;
// a child older than the new ring is served from the journal.
func TestRestartFromStore(t *testing.T) {
	ex := newFakeExchange(t)
	path := filepath.Join(t.TempDir(), "root.journal")
	cfg := testConfig(t, ex)
	j1 := openJournal(t, path, journal.Options{Logger: cfg.Logger})
	cfg.Store = j1
	r1, stop1 := startRoot(t, cfg)
	ex.publish(700)
	waitHead(t, r1, 700)
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	if err := j1.Close(); err != nil {
		t.Fatal(err)
	}
	for len(ex.logons) > 0 {
		<-ex.logons
	}
	cfg2 := testConfig(t, ex)
	j2 := openJournal(t, path, journal.Options{Logger: cfg2.Logger})
	if j2.LastSeq() != 700 {
		t.Fatalf("reopened journal last %d want 700", j2.LastSeq())
	}
	cfg2.Store = j2
	cfg2.RingSize = 512
	r2, _ := startRoot(t, cfg2)
	if lg := <-ex.logons; lg.StartSeq != 701 {
		t.Fatalf("restart logon from %d want 701", lg.StartSeq)
	}
	if f := r2.Ring().First(); f != 700-512+1 {
		t.Fatalf("refilled ring first %d want %d", f, 700-512+1)
	}
	c := dialChild(t, r2.Addr(), 1) // older than the ring: from the journal
	ex.publish(900)
	if err := c.readTo(900, ioTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestStoreAppendFailureKeepsRelaying: a journal that fails every call (here
// one already closed: Append and Range return ErrClosed) is logged and
// counted; children still get everything from the ring.
func TestStoreAppendFailureKeepsRelaying(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	j := openJournal(t, filepath.Join(t.TempDir(), "root.journal"), journal.Options{Logger: cfg.Logger})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(1, 1, testBody(1)); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("append to a closed journal: %v", err)
	}
	cfg.Store = j
	r, _ := startRoot(t, cfg)
	c := dialChild(t, r.Addr(), 1)
	ex.publish(300)
	if err := c.readTo(300, ioTimeout); err != nil {
		t.Fatal(err)
	}
	waitHead(t, r, 300)
	if n := testutil.ToFloat64(r.Metrics().StoreErrors); n != 300 {
		t.Fatalf("store errors %v, want 300", n)
	}
}
