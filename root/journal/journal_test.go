package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"tickrelay/wire"
)

// body returns the deterministic feed body of seq (a trade).
func body(seq uint64) []byte {
	m := wire.Msg{Type: wire.TypeTrade, Security: uint32(seq%50 + 1), TradeID: uint32(seq), Price: 1000 + int32(seq%7), Qty: 100}
	f, ok := wire.AppendMsgFrame(nil, seq, int64(seq)*1000, &m)
	if !ok {
		panic("bad msg")
	}
	return f[wire.FeedLenSize:]
}

func recvOf(seq uint64) int64 { return 1_700_000_000_000_000_000 + int64(seq)*1000 }

func quiet(o Options) Options {
	o.Logger = slog.New(slog.DiscardHandler)
	return o
}

func openT(t testing.TB, path string, o Options) *Journal {
	t.Helper()
	j, err := Open(path, quiet(o))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func appendN(t testing.TB, j *Journal, from, to uint64) {
	t.Helper()
	for s := from; s <= to; s++ {
		if err := j.Append(s, recvOf(s), body(s)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRange reads every item from `from` and checks seqs are contiguous up
// to want and each item is the one appended.
func checkRange(t testing.TB, j *Journal, from, want uint64) {
	t.Helper()
	next := from
	err := j.Range(from, func(seq uint64, item []byte) bool {
		if seq != next {
			t.Fatalf("range: got seq %d, want %d", seq, next)
		}
		if exp := wire.AppendRelayItem(nil, recvOf(seq), body(seq)); !bytes.Equal(item, exp) {
			t.Fatalf("range: seq %d item differs", seq)
		}
		next++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if next-1 != want {
		t.Fatalf("range from %d ended at %d, want %d", from, next-1, want)
	}
}

func TestAppendRangeReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j := openT(t, path, Options{})
	if j.LastSeq() != 0 || j.FirstSeq() != 0 {
		t.Fatalf("empty journal: last %d first %d", j.LastSeq(), j.FirstSeq())
	}
	appendN(t, j, 1, 10_000)
	// Range sees pending items too, before any flush.
	checkRange(t, j, 1, 10_000)
	checkRange(t, j, 9_990, 10_000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if j.DurableSeq() != 10_000 {
		t.Fatalf("durable %d after flush", j.DurableSeq())
	}
	// Early stop.
	n := 0
	if err := j.Range(5, func(uint64, []byte) bool { n++; return n < 3 }); err != nil || n != 3 {
		t.Fatalf("early stop: n %d err %v", n, err)
	}
	appendN(t, j, 10_001, 10_500) // pending at close: Close commits them
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := j.Append(10_501, 0, body(10_501)); err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
	j2 := openT(t, path, Options{})
	if j2.LastSeq() != 10_500 || j2.FirstSeq() != 1 || j2.DurableSeq() != 10_500 {
		t.Fatalf("reopen: first %d last %d durable %d", j2.FirstSeq(), j2.LastSeq(), j2.DurableSeq())
	}
	checkRange(t, j2, 1, 10_500)
	appendN(t, j2, 10_501, 10_600)
	checkRange(t, j2, 10_400, 10_600)
}

func TestFirstAppendAnySeq(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{})
	appendN(t, j, 500, 510)
	if j.FirstSeq() != 500 || j.LastSeq() != 510 {
		t.Fatalf("first %d last %d", j.FirstSeq(), j.LastSeq())
	}
	checkRange(t, j, 500, 510)
	var got uint64
	_ = j.Range(1, func(seq uint64, _ []byte) bool { got = seq; return false })
	if got != 500 {
		t.Fatalf("range from 1 started at %d", got)
	}
}

// TestRangeWhileAppending reads while the committer moves items from memory
// to the file: every Range sees a contiguous run up to at least LastSeq at
// its start.
func TestRangeWhileAppending(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{CommitEvery: time.Millisecond, CommitItems: 64})
	const n = 30_000
	done := make(chan error, 1)
	go func() {
		for s := uint64(1); s <= n; s++ {
			if err := j.Append(s, recvOf(s), body(s)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; ; i++ {
		last := j.LastSeq()
		from := uint64(1)
		if last > 500 {
			from = last - 500
		}
		next := from
		err := j.Range(from, func(seq uint64, item []byte) bool {
			if seq != next || binary.LittleEndian.Uint64(item) != uint64(recvOf(seq)) {
				t.Errorf("range from %d: seq %d, want %d", from, seq, next)
				return false
			}
			next++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if last > 0 && next-1 < last {
			t.Fatalf("range from %d stopped at %d before last %d", from, next-1, last)
		}
		if last == n {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOutOfOrderRejected(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{})
	appendN(t, j, 1, 5)
	for _, seq := range []uint64{0, 5, 3, 7} {
		err := j.Append(seq, 0, body(1))
		if err == nil || !strings.Contains(err.Error(), "out of order") {
			t.Fatalf("append %d after 5: err %v, want out of order", seq, err)
		}
	}
	if j.LastSeq() != 5 {
		t.Fatalf("last %d", j.LastSeq())
	}
	appendN(t, j, 6, 6)
	if err := j.Append(7, 0, make([]byte, wire.MaxFeedBody+1)); err == nil {
		t.Fatal("oversized body accepted")
	}
}

func TestGroupCommit(t *testing.T) {
	// A long CommitEvery: only CommitItems (or Flush) trigger commits.
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{CommitEvery: time.Hour, CommitItems: 1000})
	const n = 50_000
	appendN(t, j, 1, n)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Appended != n {
		t.Fatalf("appended %d", st.Appended)
	}
	// About one commit per 1,000 items plus the final flush. A kick that
	// arrives while the committer already writes the batch it announces
	// stays queued and commits what piled up meanwhile: at most one such
	// small commit per full one.
	if st.Commits == 0 || st.Commits > 2*(n/1000)+1 {
		t.Fatalf("%d commits for %d items, want 1..%d", st.Commits, n, 2*(n/1000)+1)
	}
	t.Logf("%d items in %d commits", n, st.Commits)

	// And by time: a few items commit within CommitEvery without Flush.
	j2 := openT(t, filepath.Join(t.TempDir(), "j2.db"), Options{CommitEvery: 5 * time.Millisecond})
	appendN(t, j2, 1, 3)
	deadline := time.Now().Add(5 * time.Second)
	for j2.DurableSeq() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("durable %d: timed commit never happened", j2.DurableSeq())
		}
		time.Sleep(time.Millisecond)
	}
	if c := j2.Stats().Commits; c != 1 {
		t.Fatalf("%d commits for 3 items", c)
	}
}

func TestAppendStallsWhenPendingIsFull(t *testing.T) {
	// Neither time nor count would trigger a commit: the stall itself must.
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{CommitEvery: time.Hour, CommitItems: 1 << 20, MaxPendingBytes: 10_000})
	appendN(t, j, 1, 2000)
	st := j.Stats()
	if st.Stalls == 0 || st.Commits == 0 {
		t.Fatalf("stats %+v: want stalls and commits", st)
	}
	checkRange(t, j, 1, 2000)
}

func TestMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	reg := prometheus.NewRegistry()
	for round := range 2 { // Close unregisters, so a reopen registers again
		j, err := Open(path, quiet(Options{Registerer: reg}))
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, j, j.LastSeq()+1, uint64(100*(round+1)))
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := j.SetBackedUp(40); err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[mf.GetName()] = float64(m.GetHistogram().GetSampleCount())
			}
		}
		want := uint64(100 * (round + 1))
		if got["tickrelay_journal_appended_items_total"] != 100 || got["tickrelay_journal_commits_total"] < 1 ||
			got["tickrelay_journal_commit_seconds"] < 1 || got["tickrelay_journal_unbacked_items"] != float64(want-40) ||
			got["tickrelay_journal_durable_seq"] != float64(want) || got["tickrelay_journal_stored_bytes"] <= 0 {
			t.Fatalf("round %d metrics: %v", round, got)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBackedUpWatermark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j := openT(t, path, Options{})
	appendN(t, j, 1, 10)
	if err := j.SetBackedUp(7); err != nil {
		t.Fatal(err)
	}
	if j.BackedUp() != 7 {
		t.Fatal(j.BackedUp())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j2 := openT(t, path, Options{}); j2.BackedUp() != 7 {
		t.Fatalf("backed up %d after reopen", j2.BackedUp())
	}
}

// itemSize is the stored size of seq's item.
func itemSize(seq uint64) int64 { return int64(wire.RelayItemHeader + len(body(seq))) }

// oneCommit options: nothing commits but Flush (and Close), so a run of
// appends and one Flush lays its blocks out deterministically: 1..256,
// 257..512, ... from the first seq appended.
func oneCommit(o Options) Options {
	o.CommitEvery, o.CommitItems = time.Hour, 1<<20
	return o
}

func TestRetentionBySizeStopsAtBackedUp(t *testing.T) {
	const limit = 10_000
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), oneCommit(Options{RetainBytes: limit, RequireBackup: true, RetainEvery: time.Hour}))
	appendN(t, j, 1, 2000) // blocks 1..256, ..., 1537..1792, 1793..2000
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(); err != nil || n != 0 {
		t.Fatalf("nothing backed up: deleted %d, err %v", n, err)
	}
	// Only whole blocks below the watermark go: 1..256 and 257..512, not
	// the block 513..768 that 600 is in.
	if err := j.SetBackedUp(600); err != nil {
		t.Fatal(err)
	}
	n, err := j.Retain()
	if err != nil || n != 512 || j.FirstSeq() != 513 {
		t.Fatalf("backed up 600: deleted %d first %d err %v, want 512 deleted, first 513", n, j.FirstSeq(), err)
	}
	if err := j.SetBackedUp(2000); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	// Everything goes but the block holding the newest item, which is
	// larger than the limit on its own.
	lastBlock := sizeOf(1793, 2000)
	st := j.Stats()
	if lastBlock <= limit || st.StoredBytes != lastBlock || j.FirstSeq() != 1793 || j.LastSeq() != 2000 || st.Deleted != 1792 {
		t.Fatalf("after size retention: %d bytes (last block %d), first %d last %d, %d deleted", st.StoredBytes, lastBlock, j.FirstSeq(), j.LastSeq(), st.Deleted)
	}
	checkRange(t, j, j.FirstSeq(), 2000)
	// Range from before FirstSeq starts at FirstSeq.
	var got uint64
	_ = j.Range(1, func(seq uint64, _ []byte) bool { got = seq; return false })
	if got != j.FirstSeq() {
		t.Fatalf("range from 1 started at %d, first %d", got, j.FirstSeq())
	}
}

func TestRetentionByAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	now := recvOf(1000) // items 1..1000 have recv <= now
	o := oneCommit(Options{RetainAge: time.Duration(recvOf(1000) - recvOf(600)), RequireBackup: true,
		RetainEvery: time.Hour, Now: func() int64 { return now }})
	j := openT(t, path, o)
	appendN(t, j, 1, 1000) // blocks 1..256, 257..512, 513..768, 769..1000
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := j.SetBackedUp(300); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 257 {
		t.Fatalf("age retention with BackedUp 300: first %d, want 257", j.FirstSeq())
	}
	if err := j.SetBackedUp(1000); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	// recv(600) is exactly at the cutoff, so 600 is kept, and with it its
	// whole block although 513..599 are old.
	if j.FirstSeq() != 513 {
		t.Fatalf("age retention: first %d, want 513", j.FirstSeq())
	}
	// Everything old: the block holding the newest item is still kept.
	now = recvOf(10_000_000)
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 769 || j.LastSeq() != 1000 {
		t.Fatalf("all old: first %d last %d, want 769, 1000", j.FirstSeq(), j.LastSeq())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := openT(t, path, Options{})
	if j2.FirstSeq() != 769 || j2.LastSeq() != 1000 {
		t.Fatalf("reopen: first %d last %d", j2.FirstSeq(), j2.LastSeq())
	}
	checkRange(t, j2, 769, 1000)
}

func TestRetentionWithoutBackupRequirement(t *testing.T) {
	const limit = 50_000
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), oneCommit(Options{RetainBytes: limit, RetainEvery: time.Hour}))
	appendN(t, j, 1, 5000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	// Whole blocks of 256 go until the rest fits: the last deleted block
	// left more than the limit behind it.
	st := j.Stats()
	rest, before := sizeOf(j.FirstSeq(), 5000), sizeOf(j.FirstSeq()-256, j.FirstSeq()-1)
	if st.StoredBytes > limit || st.StoredBytes != rest || rest+before <= limit || j.BackedUp() != 0 || (j.FirstSeq()-1)%256 != 0 {
		t.Fatalf("%d bytes stored (want %d <= %d), first %d", st.StoredBytes, rest, limit, j.FirstSeq())
	}
	checkRange(t, j, j.FirstSeq(), 5000)
}

// TestRetentionWholeBlocks: retention deletes whole blocks only, never one
// with an item above the backed-up watermark and never the block holding
// the newest item, and across blocks of different sizes.
func TestRetentionWholeBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	now := int64(0)
	j := openT(t, path, oneCommit(Options{RetainAge: time.Nanosecond, RequireBackup: true,
		RetainEvery: time.Hour, Now: func() int64 { return now }}))
	// Three commits: blocks 1..256, 257..300 | 301..310 | 311..566, 567..600.
	for _, to := range []uint64{300, 310, 600} {
		appendN(t, j, j.LastSeq()+1, to)
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	wantBlocks(t, j, [][2]uint64{{1, 256}, {257, 44}, {301, 10}, {311, 256}, {567, 34}})
	now = recvOf(1_000_000) // everything is old
	for _, tc := range []struct{ backedUp, first uint64 }{
		{0, 1}, {255, 1}, {256, 257}, {299, 257}, {300, 301}, {309, 301}, {310, 311},
		{565, 311}, {566, 567}, {600, 567}, // the newest block stays
	} {
		if err := j.SetBackedUp(tc.backedUp); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Retain(); err != nil {
			t.Fatal(err)
		}
		if j.FirstSeq() != tc.first {
			t.Fatalf("backed up %d: first %d, want %d", tc.backedUp, j.FirstSeq(), tc.first)
		}
		checkRange(t, j, tc.first, 600)
	}
	if st := j.Stats(); st.Deleted != 566 {
		t.Fatalf("%d deleted, want 566", st.Deleted)
	}
	wantBlocks(t, j, [][2]uint64{{567, 34}})
	want := sizeOf(567, 600)
	if got := j.Stats().StoredBytes; got != want {
		t.Fatalf("stored bytes %d, want %d", got, want)
	}
	// Appending after retention emptied all but one block; then a reopen
	// finds the same.
	appendN(t, j, 601, 700)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := openT(t, path, Options{})
	if j2.FirstSeq() != 567 || j2.LastSeq() != 700 || j2.Stats().StoredBytes != want+sizeOf(601, 700) {
		t.Fatalf("reopen: first %d last %d bytes %d", j2.FirstSeq(), j2.LastSeq(), j2.Stats().StoredBytes)
	}
	checkRange(t, j2, 567, 700)
}

// TestRetentionManyTransactions: a retention larger than maxDeletePerTx
// blocks takes several transactions and stops at the same block.
func TestRetentionManyTransactions(t *testing.T) {
	defer func(n, d int) { blockMaxItems, maxDeletePerTx = n, d }(blockMaxItems, maxDeletePerTx)
	blockMaxItems, maxDeletePerTx = 4, 3
	// RequireBackup: the committer's own retention runs (after the first
	// commit) but deletes nothing until the watermark moves.
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), oneCommit(Options{RetainBytes: 1, RequireBackup: true, RetainEvery: time.Hour}))
	appendN(t, j, 1, 101) // 25 blocks of 4, then 101 alone
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ backedUp, deleted, first uint64 }{
		{50, 48, 49},   // 12 blocks: 4 transactions of 3
		{101, 52, 101}, // 13 blocks: 5 transactions, the last one short
		{101, 0, 101},
	} {
		if err := j.SetBackedUp(tc.backedUp); err != nil {
			t.Fatal(err)
		}
		n, err := j.Retain()
		if err != nil || uint64(n) != tc.deleted || j.FirstSeq() != tc.first {
			t.Fatalf("backed up %d: deleted %d, first %d, err %v; want %d deleted, first %d", tc.backedUp, n, j.FirstSeq(), err, tc.deleted, tc.first)
		}
	}
	wantBlocks(t, j, [][2]uint64{{101, 1}})
	if st := j.Stats(); st.Deleted != 100 || st.StoredBytes != itemSize(101) {
		t.Fatalf("stats %+v", st)
	}
}

// sizeOf is the stored size of items from..to.
func sizeOf(from, to uint64) int64 {
	var n int64
	for s := from; s <= to; s++ {
		n += itemSize(s)
	}
	return n
}

// blocks lists the blocks in the file as {first seq, items}.
func blocks(t testing.TB, db *bolt.DB) [][2]uint64 {
	t.Helper()
	var out [][2]uint64
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(itemsBucket).ForEach(func(k, v []byte) error {
			n, _, err := scanBlock(v)
			out = append(out, [2]uint64{binary.BigEndian.Uint64(k), uint64(n)})
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantBlocks(t testing.TB, j *Journal, want [][2]uint64) {
	t.Helper()
	if got := blocks(t, j.db); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("blocks {first n}: %v, want %v", got, want)
	}
}

func TestCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	// Garbage.
	garbage := filepath.Join(dir, "garbage.db")
	junk := bytes.Repeat([]byte("not a journal "), 5000)
	if err := os.WriteFile(garbage, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenErr(t, garbage, "")
	// Too short to be a bbolt file.
	short := filepath.Join(dir, "short.db")
	if err := os.WriteFile(short, junk[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenErr(t, short, "")

	// A real journal cut in half.
	trunc := filepath.Join(dir, "trunc.db")
	j, err := Open(trunc, quiet(Options{SyncPolicy: SyncNone}))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 1, 20_000)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(trunc, usedSize(t, trunc)/2); err != nil {
		t.Fatal(err)
	}
	wantOpenErr(t, trunc, "truncated")

	// Trashed data pages, meta intact.
	trash := filepath.Join(dir, "trash.db")
	j, err = Open(trash, quiet(Options{SyncPolicy: SyncNone}))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 1, 20_000)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(trash, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	for off := int64(4 * 4096); off < fi.Size(); off += 4096 {
		_, _ = f.WriteAt(junk[:4096], off)
	}
	_ = f.Close()
	wantOpenErr(t, trash, "")
}

// usedSize is the file size bbolt's meta page claims (the file itself is
// usually longer: bbolt grows it ahead).
func usedSize(t *testing.T, path string) int64 {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	_ = db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

func wantOpenErr(t *testing.T, path, substr string) {
	t.Helper()
	j, err := Open(path, quiet(Options{}))
	if err == nil {
		_ = j.Close()
		t.Fatalf("open %s: no error", path)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("open %s: error %q does not name the file (or lacks %q)", path, err, substr)
	}
	t.Logf("open %s: %v", filepath.Base(path), err)
}

// editFile runs fn in a read-write transaction on a closed journal's file.
func editFile(t *testing.T, path string, fn func(items *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(itemsBucket)) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// closedJournal writes items 1..n in one commit (blocks of 256) and closes.
func closedJournal(t *testing.T, path string, n uint64) {
	t.Helper()
	j, err := Open(path, quiet(oneCommit(Options{SyncPolicy: SyncNone})))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 1, n)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

func blockKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func TestHoleRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	closedJournal(t, path, 1000) // blocks 1, 257, 513, 769
	editFile(t, path, func(b *bolt.Bucket) error { return b.Delete(blockKey(257)) })
	wantOpenErr(t, path, "has a hole: epoch 0 seqs 257..512 are missing")
	editFile(t, path, func(b *bolt.Bucket) error { return b.Delete(blockKey(513)) })
	wantOpenErr(t, path, "has a hole: epoch 0 seqs 257..768 are missing")

	// Blocks that overlap: the second block's key moved back one seq.
	path = filepath.Join(t.TempDir(), "overlap.db")
	closedJournal(t, path, 1000)
	editFile(t, path, func(b *bolt.Bucket) error {
		v := append([]byte(nil), b.Get(blockKey(513))...)
		if err := b.Delete(blockKey(513)); err != nil {
			return err
		}
		return b.Put(blockKey(512), v)
	})
	wantOpenErr(t, path, "block at seq 512 overlaps the previous block, which ends at seq 512")

	// The first block gone: not a hole, the journal just starts later.
	path = filepath.Join(t.TempDir(), "head.db")
	closedJournal(t, path, 1000)
	editFile(t, path, func(b *bolt.Bucket) error { return b.Delete(blockKey(1)) })
	j := openT(t, path, Options{})
	if j.FirstSeq() != 257 || j.LastSeq() != 1000 {
		t.Fatalf("first block deleted: first %d last %d", j.FirstSeq(), j.LastSeq())
	}
}

// TestEpochs: a later epoch's seqs start over in a key range of their own:
// appended after the last epoch's (its pending items committed first), read
// back in order across the jump, reopened without a hole; an epoch that is
// not later, or a seq skipped within one, is refused.
func TestEpochs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := Open(path, quiet(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 1, 300) // epoch 0, as before epochs
	for _, e := range []uint32{4, 9} {
		for s := uint64(1); s <= 300; s++ {
			if err := j.Append(wire.Pos(e, s), recvOf(s), body(s)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []uint64{wire.Pos(9, 302), wire.Pos(8, 1), wire.Pos(9, 300), 301} {
		if err := j.Append(p, 0, body(1)); err == nil || !strings.Contains(err.Error(), "out of order") {
			t.Fatalf("append %x after epoch 9 seq 300: %v", p, err)
		}
	}
	check := func(j *Journal) {
		t.Helper()
		want := []uint64{}
		for _, e := range []uint32{0, 4, 9} {
			for s := uint64(1); s <= 300; s++ {
				want = append(want, wire.Pos(e, s))
			}
		}
		var got []uint64
		if err := j.Range(wire.Pos(0, 200), func(p uint64, item []byte) bool {
			if exp := wire.AppendRelayItem(nil, recvOf(wire.PosSeq(p)), body(wire.PosSeq(p))); !bytes.Equal(item, exp) {
				t.Fatalf("item at %x differs", p)
			}
			got = append(got, p)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[199:]) {
			t.Fatalf("range across epochs: %d items, want %d", len(got), len(want)-199)
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, path, Options{})
	check(j)
	if j.LastSeq() != wire.Pos(9, 300) || j.FirstSeq() != 1 {
		t.Fatalf("reopened: first %x last %x", j.FirstSeq(), j.LastSeq())
	}
}

// TestRetainEpochs: RetainEpochs keeps the newest epochs whole and deletes
// the older ones' blocks (not past the backup watermark with
// RequireBackup); retention by bytes walks across an epoch's end.
func TestRetainEpochs(t *testing.T) {
	fill := func(j *Journal) {
		appendN(t, j, 1, 300)
		for _, e := range []uint32{4, 9} {
			for s := uint64(1); s <= 300; s++ {
				if err := j.Append(wire.Pos(e, s), recvOf(s), body(s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{RetainEpochs: 2, RequireBackup: true})
	fill(j)
	if err := j.SetBackedUp(100); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(); err != nil || n != 0 {
		t.Fatalf("retained %d (%v) with the watermark inside epoch 0's first block", n, err)
	}
	if err := j.SetBackedUp(wire.Pos(9, 300)); err != nil {
		t.Fatal(err)
	}
	// (The committer may run retention too: count what is gone.)
	if _, err := j.Retain(); err != nil || j.Stats().Deleted != 300 || j.FirstSeq() != wire.Pos(4, 1) {
		t.Fatalf("deleted %d (%v), first %x: want epoch 0's 300 gone", j.Stats().Deleted, err, j.FirstSeq())
	}

	// By bytes: everything but the newest block, across both epoch ends.
	j = openT(t, filepath.Join(t.TempDir(), "b.db"), Options{RetainBytes: 1})
	fill(j)
	// (Where the newest block starts depends on the commits.)
	if _, err := j.Retain(); err != nil || wire.PosEpoch(j.FirstSeq()) != 9 || j.Stats().Deleted != 900-(j.LastSeq()-j.FirstSeq()+1) {
		t.Fatalf("deleted %d (%v), first %x", j.Stats().Deleted, err, j.FirstSeq())
	}
}

// TestBadBlockRefused: a block whose value does not parse into whole items
// is refused at Open, naming the block and what is wrong.
func TestBadBlockRefused(t *testing.T) {
	item := func(seq uint64) []byte { return wire.AppendRelayItem(nil, recvOf(seq), body(seq)) }
	for _, tc := range []struct {
		name   string
		change func(v []byte) []byte
		want   string
	}{
		{"cut inside the last item", func(v []byte) []byte { return v[:len(v)-3] },
			fmt.Sprintf("block at seq 257: item 255 (offset %d): value of %d bytes holds bodyLen %d",
				sizeOf(257, 511), itemSize(512)-3, itemSize(512)-wire.RelayItemHeader)},
		{"cut inside the last header", func(v []byte) []byte { return v[:len(v)-int(itemSize(512))+4] },
			fmt.Sprintf("block at seq 257: item 255 (offset %d): value of 4 bytes is shorter than the item header", sizeOf(257, 511))},
		{"junk after the last item", func(v []byte) []byte { return append(v, 1, 2, 3) },
			"block at seq 257: item 256 (offset " + strconv.FormatInt(sizeOf(257, 512), 10) + "): value of 3 bytes is shorter"},
		{"bodyLen past the end in the middle", func(v []byte) []byte {
			off := sizeOf(257, 299) // item 43, seq 300
			binary.LittleEndian.PutUint16(v[off+8:], 65000)
			return v
		}, fmt.Sprintf("block at seq 257: item 43 (offset %d): value of %d bytes holds bodyLen 65000",
			sizeOf(257, 299), sizeOf(300, 512))},
		{"empty", func([]byte) []byte { return []byte{} }, "block at seq 257: empty block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.db")
			closedJournal(t, path, 1000)
			editFile(t, path, func(b *bolt.Bucket) error {
				v := append([]byte(nil), b.Get(blockKey(257))...)
				if !bytes.Equal(v[:len(item(257))], item(257)) {
					return fmt.Errorf("block 257 does not start with item 257")
				}
				return b.Put(blockKey(257), tc.change(v))
			})
			wantOpenErr(t, path, "is corrupt: "+tc.want)
		})
	}
}

// TestOldFormatRefused: a format 1 file (one key per item, no "format" in
// meta) with items is refused with an error that says so; an empty one is
// adopted; an unknown format is refused.
func TestOldFormatRefused(t *testing.T) {
	dir := t.TempDir()
	makeFile := func(name string, fill func(tx *bolt.Tx) error) string {
		path := filepath.Join(dir, name)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	v1 := func(items int) func(tx *bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(itemsBucket)
			if err != nil {
				return err
			}
			m, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			if err := m.Put(keyBackedUp, blockKey(3)); err != nil {
				return err
			}
			for s := uint64(1); s <= uint64(items); s++ {
				if err := b.Put(blockKey(s), wire.AppendRelayItem(nil, recvOf(s), body(s))); err != nil {
					return err
				}
			}
			return nil
		}
	}
	old := makeFile("old.db", v1(10))
	wantOpenErr(t, old, "is in the old journal format (format 1: one bbolt key per item)")
	// The refusal left the file as it was: no format key, items intact.
	db, err := bolt.Open(old, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if f := tx.Bucket(metaBucket).Get(keyFormat); f != nil || tx.Bucket(itemsBucket).Stats().KeyN != 10 {
			t.Errorf("refused old file changed: format %x, %d items", f, tx.Bucket(itemsBucket).Stats().KeyN)
		}
		return nil
	})
	_ = db.Close()

	empty := makeFile("old-empty.db", v1(0))
	j := openT(t, empty, Options{})
	if j.LastSeq() != 0 || j.BackedUp() != 3 {
		t.Fatalf("empty format 1 file: last %d backed up %d", j.LastSeq(), j.BackedUp())
	}
	appendN(t, j, 1, 300)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, empty, Options{}) // now format 2
	checkRange(t, j, 1, 300)

	future := makeFile("future.db", func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		return m.Put(keyFormat, []byte{0, 0, 0, 3})
	})
	wantOpenErr(t, future, "has journal format 3; this build reads only format 2")
}

// TestBlockLayout: one commit's items are cut into blocks of blockMaxItems
// items and at most blockMaxBytes (an item larger than that alone), and
// blocks continue across a restart.
func TestBlockLayout(t *testing.T) {
	defer func(n, b int) { blockMaxItems, blockMaxBytes = n, b }(blockMaxItems, blockMaxBytes)
	blockMaxItems, blockMaxBytes = 4, 100
	path := filepath.Join(t.TempDir(), "j.db")
	j := openT(t, path, oneCommit(Options{}))
	// Item sizes: 10 B of header + body.
	sizes := []int{20, 20, 20, 20, 20, 20, 50, 50, 150, 30, 60, 60, 100, 10}
	bodyOf := func(seq uint64) []byte {
		b := bytes.Repeat([]byte{byte(seq)}, sizes[seq-1]-wire.RelayItemHeader)
		return b
	}
	for i := range sizes {
		seq := uint64(i + 1)
		if err := j.Append(seq, int64(seq), bodyOf(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	// 4 items | 20+20+50 (one more is 140) | 50 | 150 alone | 30+60 | 60 | 100 | 10
	wantBlocks(t, j, [][2]uint64{{1, 4}, {5, 3}, {8, 1}, {9, 1}, {10, 2}, {12, 1}, {13, 1}, {14, 1}})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, path, oneCommit(Options{}))
	if j.FirstSeq() != 1 || j.LastSeq() != 14 {
		t.Fatalf("reopen: first %d last %d", j.FirstSeq(), j.LastSeq())
	}
	for from := uint64(0); from <= 15; from++ {
		next := max(from, 1)
		err := j.Range(from, func(seq uint64, item []byte) bool {
			if seq != next || !bytes.Equal(item, wire.AppendRelayItem(nil, int64(seq), bodyOf(seq))) {
				t.Fatalf("range from %d: seq %d (want %d) or its item differs", from, seq, next)
			}
			next++
			return true
		})
		if err != nil || next != 15 {
			t.Fatalf("range from %d: ended before %d, err %v", from, next, err)
		}
	}
}

// TestBlocksAcrossRestart: blocks written before and after a restart are
// contiguous; Range crosses from one to the other, from any seq.
func TestBlocksAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j := openT(t, path, oneCommit(Options{}))
	appendN(t, j, 1, 300)
	if err := j.Close(); err != nil { // Close commits the pending items
		t.Fatal(err)
	}
	j = openT(t, path, oneCommit(Options{}))
	if j.FirstSeq() != 1 || j.LastSeq() != 300 || j.DurableSeq() != 300 {
		t.Fatalf("reopen: first %d last %d durable %d", j.FirstSeq(), j.LastSeq(), j.DurableSeq())
	}
	if err := j.Append(302, 0, body(302)); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("append 302 after reopen at 300: %v", err)
	}
	appendN(t, j, 301, 700)
	checkRange(t, j, 250, 700) // committed blocks, then pending items
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, path, Options{})
	if j.FirstSeq() != 1 || j.LastSeq() != 700 {
		t.Fatalf("second reopen: first %d last %d", j.FirstSeq(), j.LastSeq())
	}
	wantBlocks(t, j, [][2]uint64{{1, 256}, {257, 44}, {301, 256}, {557, 144}})
	for _, from := range []uint64{1, 256, 257, 299, 300, 301, 302, 556, 557, 700} {
		checkRange(t, j, from, 700)
	}
	var n int
	if err := j.Range(701, func(uint64, []byte) bool { n++; return true }); err != nil || n != 0 {
		t.Fatalf("range past the end: %d items, err %v", n, err)
	}
	if st := j.Stats(); st.StoredBytes != sizeOf(1, 700) {
		t.Fatalf("stored bytes %d, want %d", st.StoredBytes, sizeOf(1, 700))
	}
}

// TestRangeMidBlock: Range from any seq inside a block starts exactly
// there, also when its read transactions end mid-block.
func TestRangeMidBlock(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), oneCommit(Options{}))
	appendN(t, j, 1, 1000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	wantBlocks(t, j, [][2]uint64{{1, 256}, {257, 256}, {513, 256}, {769, 232}})
	for _, txItems := range []int{rangeTxItems, 100, 7, 1} {
		func() {
			defer func(n int) { rangeTxItems = n }(rangeTxItems)
			rangeTxItems = txItems
			for _, from := range []uint64{1, 2, 100, 255, 256, 257, 258, 511, 512, 513, 600, 768, 769, 999, 1000} {
				checkRange(t, j, from, 1000)
			}
		}()
	}
	// Early stop mid-block.
	var got []uint64
	if err := j.Range(300, func(seq uint64, _ []byte) bool { got = append(got, seq); return len(got) < 3 }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[300 301 302]" {
		t.Fatalf("early stop: %v", got)
	}
}

func TestLockedFileErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	openT(t, path, Options{})
	start := time.Now()
	j, err := Open(path, quiet(Options{LockTimeout: 100 * time.Millisecond}))
	if err == nil {
		_ = j.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked") || time.Since(start) > 10*time.Second {
		t.Fatalf("locked: %v after %v", err, time.Since(start))
	}
}

func TestOptionsValidate(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "j.db"), Options{SyncPolicy: "sometimes"}); err == nil || !strings.Contains(err.Error(), "SyncPolicy") {
		t.Fatalf("bad sync policy: %v", err)
	}
	if err := (Options{CommitItems: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "CommitItems") {
		t.Fatalf("bad CommitItems: %v", err)
	}
}

const crashEnv = "TICKRELAY_JOURNAL_CRASH_CHILD"

// TestCrashChild is the child half of TestCrashSafety: it appends forever
// with SyncPolicy always and prints each durable seq after a Flush.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	j, err := Open(path, quiet(Options{SyncPolicy: SyncAlways, CommitItems: 256}))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	for seq := j.LastSeq() + 1; ; seq++ {
		if err := j.Append(seq, recvOf(seq), body(seq)); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		if seq%100 == 0 {
			if err := j.Flush(); err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			fmt.Println("DURABLE", j.DurableSeq())
		}
	}
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	var acked uint64
	for round := 0; round < 3; round++ {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		target := acked + 3000 + uint64(round)*777
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ERR") {
				t.Fatalf("child: %s", line)
			}
			if s, ok := strings.CutPrefix(line, "DURABLE "); ok {
				v, _ := strconv.ParseUint(s, 10, 64)
				acked = v
				if v >= target {
					break
				}
			}
		}
		// Kill mid-stream: the child keeps appending while we wait and signal.
		time.Sleep(time.Duration(round*15) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if acked < target {
			t.Fatalf("child ended early at %d (scan err %v)", acked, sc.Err())
		}
		j, err := Open(path, quiet(Options{}))
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		if j.LastSeq() < acked {
			t.Fatalf("lost acknowledged items: last %d < acked %d", j.LastSeq(), acked)
		}
		checkRange(t, j, 1, j.LastSeq())
		t.Logf("round %d: acked %d, reopened with %d..%d", round, acked, j.FirstSeq(), j.LastSeq())
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkJournalAppend measures Append alone, in steady state: the
// committer is parked (it commits only on Flush, between timed chunks) and
// both batch buffers have already grown, so Append must not allocate.
func BenchmarkJournalAppend(b *testing.B) {
	const chunk = 1 << 16 // items appended per timed stretch
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone,
		CommitEvery: time.Hour, CommitItems: 1 << 30, MaxPendingBytes: 1 << 30})
	bodies := benchBodies()
	seq := uint64(0)
	fill := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			if err := j.Append(seq, int64(seq), bodies[seq&63]); err != nil {
				b.Fatal(err)
			}
		}
	}
	flush := func() {
		if err := j.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	// Warm both batch buffers to a chunk.
	for range 2 {
		fill(chunk)
		flush()
	}
	b.SetBytes(int64(wire.RelayItemHeader + len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for left := b.N; left > 0; left -= chunk {
		fill(min(left, chunk))
		b.StopTimer()
		flush()
		b.StartTimer()
	}
	b.StopTimer()
}

// BenchmarkJournalAppendCommit is Append plus a synchronous group commit
// every 4096 items (SyncPolicy none: the disk's fsync rate is not what it
// measures), one after the other: ns/op is the journal's whole CPU cost
// per item, Append and bbolt together; allocations are bbolt's.
func BenchmarkJournalAppendCommit(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone,
		CommitEvery: time.Hour, CommitItems: 1 << 30})
	bodies := benchBodies()
	b.SetBytes(int64(wire.RelayItemHeader + len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if err := j.Append(uint64(i), int64(i), bodies[i&63]); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 0 || i == b.N {
			if err := j.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
}

// BenchmarkJournalSmallCommits is the journal at a low rate: a commit every
// 5 ms at 10k items/s holds 50 items, and a transaction's fixed cost
// (pages, meta, freelist) is then most of the root's journal CPU. ns/op is
// per item; ns/commit is the transaction.
func BenchmarkJournalSmallCommits(b *testing.B) {
	const per = 50
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone,
		CommitEvery: time.Hour, CommitItems: 1 << 30})
	bodies := benchBodies()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		if err := j.Append(uint64(i), int64(i), bodies[i&63]); err != nil {
			b.Fatal(err)
		}
		if i%per == 0 || i == b.N {
			if err := j.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(b.N/per, 1)), "ns/commit")
}

// BenchmarkJournalThroughput is Append plus the group commits behind it
// (SyncPolicy none: the disk's fsync rate is not what it measures): ns/op
// is the sustained cost per item; allocations are bbolt's, in the committer.
func BenchmarkJournalThroughput(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone})
	bodies := benchBodies()
	b.SetBytes(int64(wire.RelayItemHeader + len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := j.Append(uint64(i+1), int64(i), bodies[i&63]); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := j.Stats()
	b.ReportMetric(float64(b.N)/float64(max(st.Commits, 1)), "items/commit")
}

// BenchmarkJournalRange reads committed items back (a child's catch-up):
// one op is one item.
func BenchmarkJournalRange(b *testing.B) {
	const n = 1 << 16
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone})
	bodies := benchBodies()
	for i := 1; i <= n; i++ {
		if err := j.Append(uint64(i), int64(i), bodies[i&63]); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(wire.RelayItemHeader + len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	var sum int
	for left := b.N; left > 0; left -= n {
		want := min(left, n)
		got := 0
		err := j.Range(1, func(_ uint64, item []byte) bool {
			sum += len(item)
			got++
			return got < want
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sum == 0 {
		b.Fatal("nothing read")
	}
}

func benchBodies() [][]byte {
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = body(uint64(i + 1))
	}
	return bodies
}
