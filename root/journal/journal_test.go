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
	// At most one commit per 1,000 items plus the final flush.
	if st.Commits == 0 || st.Commits > n/1000+1 {
		t.Fatalf("%d commits for %d items, want 1..%d", st.Commits, n, n/1000+1)
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

func TestRetentionBySizeStopsAtBackedUp(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{RetainBytes: 10_000, RequireBackup: true, RetainEvery: time.Hour})
	appendN(t, j, 1, 2000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := j.Retain(); err != nil || n != 0 {
		t.Fatalf("nothing backed up: deleted %d, err %v", n, err)
	}
	if err := j.SetBackedUp(500); err != nil {
		t.Fatal(err)
	}
	n, err := j.Retain()
	if err != nil || n != 500 || j.FirstSeq() != 501 {
		t.Fatalf("backed up 500: deleted %d first %d err %v", n, j.FirstSeq(), err)
	}
	if err := j.SetBackedUp(2000); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.StoredBytes > 10_000 || j.FirstSeq() <= 501 || j.LastSeq() != 2000 {
		t.Fatalf("after size retention: %d bytes, first %d", st.StoredBytes, j.FirstSeq())
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
	o := Options{RetainAge: time.Duration(recvOf(1000) - recvOf(600)), RequireBackup: true,
		RetainEvery: time.Hour, Now: func() int64 { return now }}
	j := openT(t, path, o)
	appendN(t, j, 1, 1000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := j.SetBackedUp(300); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 301 {
		t.Fatalf("age retention passed BackedUp: first %d", j.FirstSeq())
	}
	if err := j.SetBackedUp(1000); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 600 { // recv(600) is exactly at the cutoff: kept
		t.Fatalf("age retention: first %d, want 600", j.FirstSeq())
	}
	// Everything old: the newest item is still kept.
	now = recvOf(10_000_000)
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if j.FirstSeq() != 1000 || j.LastSeq() != 1000 {
		t.Fatalf("all old: first %d last %d", j.FirstSeq(), j.LastSeq())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := openT(t, path, Options{})
	if j2.FirstSeq() != 1000 || j2.LastSeq() != 1000 {
		t.Fatalf("reopen: first %d last %d", j2.FirstSeq(), j2.LastSeq())
	}
}

func TestRetentionWithoutBackupRequirement(t *testing.T) {
	j := openT(t, filepath.Join(t.TempDir(), "j.db"), Options{RetainBytes: 5_000, RetainEvery: time.Hour})
	appendN(t, j, 1, 1000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Retain(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.StoredBytes > 5_000 || j.BackedUp() != 0 {
		t.Fatalf("%d bytes stored", st.StoredBytes)
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

func TestHoleRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := Open(path, quiet(Options{}))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 1, 100)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(itemsBucket)
		var k [8]byte
		for s := uint64(40); s <= 42; s++ {
			binary.BigEndian.PutUint64(k[:], s)
			if err := b.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantOpenErr(t, path, "seqs 40..42 are missing")
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
// committer is parked (commits only on Flush) and both batch buffers have
// already grown, so Append must not allocate.
func BenchmarkJournalAppend(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone,
		CommitEvery: time.Hour, CommitItems: 1 << 30, MaxPendingBytes: 1 << 30})
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = body(uint64(i + 1))
	}
	seq := uint64(0)
	fill := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			if err := j.Append(seq, int64(seq), bodies[seq&63]); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Warm both batch buffers to b.N items.
	for range 2 {
		fill(b.N)
		if err := j.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(wire.RelayItemHeader + len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	fill(b.N)
	b.StopTimer()
}

// BenchmarkJournalThroughput is Append plus the group commits behind it
// (SyncPolicy none: the disk's fsync rate is not what it measures): ns/op
// is the sustained cost per item; allocations are bbolt's, in the committer.
func BenchmarkJournalThroughput(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{SyncPolicy: SyncNone})
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = body(uint64(i + 1))
	}
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
