package backup_test

import (
	"bufio"
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/root/backup"
)

// privatePG starts a PostgreSQL of its own with scripts/testpg.sh (the
// shared test server must not be stopped under other packages' tests) and
// returns its DSN and a pg_ctl runner for it.
func privatePG(t *testing.T) (dsn, dir string, pgctl func(args ...string)) {
	t.Helper()
	script, err := filepath.Abs("../../scripts/testpg.sh")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), script, "start")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testpg.sh start: %v: %s", err, errOut.String())
		}
		t.Skipf("no private PostgreSQL (testpg.sh start: %v: %s)", err, strings.TrimSpace(errOut.String()))
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		v = strings.Trim(v, "'")
		switch k {
		case "TICKRELAY_TEST_PG":
			dsn = v
		case "TICKRELAY_TEST_PGDIR":
			dir = v
		}
	}
	if dsn == "" || dir == "" {
		t.Fatalf("testpg.sh start printed %q", out.String())
	}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("testpg.sh stop: %v: %s", err, out)
		}
	})
	bindir, err := os.ReadFile(filepath.Join(dir, ".tickrelay-testpg"))
	if err != nil {
		t.Fatal(err)
	}
	pgctl = func(args ...string) {
		t.Helper()
		argv := append([]string{filepath.Join(strings.TrimSpace(string(bindir)), "pg_ctl"), "-D", filepath.Join(dir, "data")}, args...)
		if os.Geteuid() == 0 { // pg_ctl refuses root; testpg.sh runs it as postgres
			argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
		}
		c := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("pg_ctl %v: %v: %s", args, err, out)
		}
	}
	return dsn, dir, pgctl
}

// TestPostgresStoppedMidRound stops a real server with pg_ctl while a round
// is copying, then starts it again.
func TestPostgresStoppedMidRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	dsn, dir, pgctl := privatePG(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Port() == "" {
		t.Fatalf("private DSN %q", dsn)
	}
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
	pgctl("-m", "immediate", "-w", "stop")
	err = <-errc
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
	pgctl("-l", filepath.Join(dir, "postgres.log"), "-o", "-p "+u.Port(), "-w", "-t", "60", "start")
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatalf("round after restart: %v", err)
	}
	checkRows(t, dsn, "tickrelay_items", j.LastSeq())
}
