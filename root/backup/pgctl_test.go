package backup_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/pgtest"
	"tickrelay/root/backup"
)

// TestPostgresStoppedMidRound stops a real server with pg_ctl while a round
// is copying, then starts it again.
func TestPostgresStoppedMidRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	pg := pgtest.Private(t)
	dsn := pg.DSN
	const n = 400_000
	j := newJournal(t, n)
	reg := prometheus.NewRegistry()
	b := newBackup(t, dsn, j, func(c *backup.Config) {
		c.ChunkItems = 5000
		c.Registerer = reg
		c.ConnectTimeout = 2 * time.Second
	})
	errc := make(chan error, 1)
	go func() { errc <- b.RunOnce(t.Context()) }()
	deadline := time.Now().Add(15 * time.Second)
	for j.BackedUp() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	pg.Stop("immediate")
	err := <-errc
	if err == nil {
		t.Logf("the round finished before the server stopped (watermark %d)", j.BackedUp())
		appendTo(t, j, n+1000)
		err = b.RunOnce(t.Context())
		if err == nil {
			t.Fatal("round with the server stopped succeeded")
		}
	}
	t.Logf("round error: %v", err)
	mid := j.BackedUp()
	if bl := gauge(t, reg, "tickrelay_backup_backlog_items"); bl <= 0 || bl != float64(j.LastSeq()-mid) {
		t.Fatalf("backlog metric %v, watermark %d, last %d", bl, mid, j.LastSeq())
	}
	t.Logf("stopped at watermark %d of %d", mid, j.LastSeq())
	// Down: the next round fails at connect.
	if err := b.RunOnce(t.Context()); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("round while stopped: %v", err)
	}
	pg.Start()
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatalf("round after restart: %v", err)
	}
	checkRows(t, dsn, "tickrelay_items", j.LastSeq())
}
