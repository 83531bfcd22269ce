package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"tickrelay/feed"
	"tickrelay/internal/pgtest"
	"tickrelay/root/backup"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

// TestBackupRoundMinute runs one backup round of a full minute at
// 200k items/s (12M items of the simulator's market mix) from a real journal
// into PostgreSQL and logs how long it took: a round must finish well inside
// the minute. It takes minutes and ~2 GB of disk, so it runs only with
// TICKRELAY_BIG_ROUND=1 (never in `make test`); TICKRELAY_BIG_ROUND=N sets
// another item count.
func TestBackupRoundMinute(t *testing.T) {
	n, _ := strconv.ParseUint(os.Getenv("TICKRELAY_BIG_ROUND"), 10, 64)
	switch {
	case n == 0:
		t.Skip("set TICKRELAY_BIG_ROUND=1 (or an item count) to run the 12M-item round")
	case n == 1:
		n = 60 * 200_000
	}
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	j, err := journal.Open(filepath.Join(t.TempDir(), "big.journal"), journal.Options{SyncPolicy: journal.SyncNone, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	g := feed.NewGenerator(feed.GenConfig{Seed: 1, Symbols: 2000, Total: n})
	var m wire.Msg
	var frame []byte
	start := time.Now()
	recv := time.Now().UnixNano()
	for seq := uint64(1); seq <= n; seq++ {
		g.Next(&m)
		var ok bool
		if frame, ok = wire.AppendMsgFrame(frame[:0], seq, recv, &m); !ok {
			t.Fatalf("seq %d does not encode", seq)
		}
		if err := j.Append(seq, recv+int64(seq)*5000, frame[wire.FeedLenSize:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("journal: %d items, %d bytes, written in %v", n, j.Stats().StoredBytes, time.Since(start).Round(time.Millisecond))

	cfg := backup.DefaultConfig()
	cfg.DSN, cfg.Source, cfg.Logger = dsn, j, testLogger()
	b, err := backup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start = time.Now()
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("backup round of %d items (ChunkItems %d, Parallel %d): %v, %.0f items/s", n, cfg.ChunkItems, cfg.Parallel,
		took.Round(time.Millisecond), float64(n)/took.Seconds())
	if j.BackedUp() != n {
		t.Fatalf("watermark %d, want %d", j.BackedUp(), n)
	}
}
