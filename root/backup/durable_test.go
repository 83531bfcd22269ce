package backup_test

import (
	"path/filepath"
	"testing"
	"time"

	"tickrelay/internal/pgtest"
	"tickrelay/root/journal"
)

// TestRoundCopiesOnlyDurable: items appended to the journal but not yet
// committed wait for a later round, so neither the table nor the watermark
// ever runs ahead of what survives a crash of the root.
func TestRoundCopiesOnlyDurable(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{
		SyncPolicy: journal.SyncNone, CommitEvery: time.Hour, CommitItems: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	appendTo(t, j, 1000) // committed
	for s := uint64(1001); s <= 1500; s++ {
		if err := j.Append(s, recvOf(s), body(s)); err != nil {
			t.Fatal(err)
		}
	}
	if j.DurableSeq() != 1000 || j.LastSeq() != 1500 {
		t.Fatalf("durable %d last %d, want 1000 and 1500", j.DurableSeq(), j.LastSeq())
	}
	b := newBackup(t, dsn, j, nil)
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if j.BackedUp() != 1000 {
		t.Fatalf("watermark %d after a round with 1000 committed of 1500, want 1000", j.BackedUp())
	}
	checkRows(t, dsn, "tickrelay_items", 1000)
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkRows(t, dsn, "tickrelay_items", 1500)
}
