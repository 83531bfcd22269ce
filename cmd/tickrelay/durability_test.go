package main

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"tickrelay/child"
	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/internal/pgtest"
	"tickrelay/perf"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

// Durability, end to end through the `tickrelay root` binary: journal,
// restart recovery after kill -9, Postgres backup through an outage, refusal
// of a bad journal, catch-up from the journal below the ring.

// checkChild requires ch to have received every seq 1..n exactly once: its
// relay session drops duplicates and reconnects on gaps, so n parsed items,
// nothing skipped and LastSeq n mean each seq once; a client RESUME of the
// whole stream checks order and content.
func checkChild(t *testing.T, ch *child.Child, ex interface {
	Body(uint64) ([]byte, bool)
}, n uint64) {
	t.Helper()
	m := ch.Metrics()
	if got := ch.LastSeq(); got != n {
		t.Fatalf("child last seq %d, want %d", got, n)
	}
	if items, lost := testutil.ToFloat64(m.Items), testutil.ToFloat64(m.LostItems); items != float64(n) || lost != 0 {
		t.Fatalf("child parsed %v items and lost %v, want %d and 0", items, lost, n)
	}
	t.Logf("child: %d items, %v duplicates dropped, %v gaps, %v reconnects", n,
		testutil.ToFloat64(m.Duplicates), testutil.ToFloat64(m.Gaps), testutil.ToFloat64(m.Reconnects))
}

// TestRootKill9Recovery: a root with a journal and a Postgres backup is
// killed with SIGKILL at a random point mid-stream and started again on the
// same journal. It must resume the exchange session at the journal's last
// seq + 1; the child must end with every seq exactly once; the table must
// hold every seq exactly once after the final round.
func TestRootKill9Recovery(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	const total = 200_000
	ex := startExchange(t, 100_000, 500, total)
	relayAddr, admin := freeAddr(t), freeAddr(t)
	jpath := filepath.Join(t.TempDir(), "root.journal")
	// Rounds every 300ms: the kill usually lands after some rounds and
	// sometimes inside one.
	args := rootArgs(ex.Addr(), relayAddr, admin, jpath, "-postgres", dsn, "-backup-every", "300ms", "-ring-size", "65536")

	r1 := startProc(t, "root (first)", args...)
	r1.waitLog(t, 30*time.Second, "relay listening")
	ch := startChildAt(t, relayAddr, "c", 1)

	killAt := uint64(20_000 + rand.IntN(140_000))
	t.Logf("killing the root after the child has %d items", killAt)
	waitFor(t, "the child to reach the kill point", 45*time.Second, func() bool { return ch.LastSeq() >= killAt })
	r1.kill9(t)
	atKill := ch.LastSeq()

	// What survived in the journal decides where the restart resumes.
	j, err := journal.Open(jpath, journal.Options{Logger: testLogger()})
	if err != nil {
		t.Fatalf("journal after kill -9: %v", err)
	}
	last, backedUp := j.LastSeq(), j.BackedUp()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("after kill -9: child at %d, journal last %d, backed up %d", atKill, wire.PosSeq(last), wire.PosSeq(backedUp))
	if last == 0 {
		t.Fatal("journal empty after the kill")
	}
	if backedUp > last {
		t.Fatalf("backup watermark %d ahead of the journal's surviving last seq %d", backedUp, last)
	}

	r2 := startProc(t, "root (restarted)", args...)
	if line := r2.waitLog(t, 30*time.Second, "ring refilled from store"); attr(line, "head") != strconv.FormatUint(wire.PosSeq(last), 10) {
		t.Fatalf("restarted root refilled its ring to a head other than the journal's last seq %d: %s", last, line)
	}
	if line := r2.waitLog(t, 30*time.Second, "exchange session up"); attr(line, "start_seq") != strconv.FormatUint(wire.PosSeq(last)+1, 10) {
		t.Fatalf("restarted root did not resume at journal last + 1 = %d: %s", last+1, line)
	}
	waitFor(t, "the child to get everything", 50*time.Second, func() bool { return ch.LastSeq() == total })
	// Backed up while running (rounds every second), then the final round at SIGTERM.
	waitFor(t, "a backup round to cover the stream", 30*time.Second, func() bool {
		v, ok := perf.Scrape(admin, "tickrelay_backup_backlog_items")
		h, _ := perf.Scrape(admin, "tickrelay_journal_last_seq")
		return ok && v == 0 && h == total
	})
	r2.stop(t, 30*time.Second)
	r2.waitLog(t, time.Second, "journal closed", "durable_seq="+strconv.Itoa(total))

	checkChild(t, ch, ex, total)
	verifyResume(t, ch, ex, 1, total)
	checkTable(t, dsn, "tickrelay_items", ex, total)
}

// TestBackupThroughPostgresOutage: the root's Postgres (a private server)
// is stopped with pg_ctl mid-stream for a few seconds, then started. While it
// is down the backlog metric grows; after the next round the table holds
// every seq exactly once.
func TestBackupThroughPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	pg := pgtest.Private(t)
	dsn := pg.DSN
	const total = 200_000
	ex := startExchange(t, 25_000, 500, total) // ~8 s of stream
	relayAddr, admin := freeAddr(t), freeAddr(t)
	jpath := filepath.Join(t.TempDir(), "root.journal")
	r := startProc(t, "root", rootArgs(ex.Addr(), relayAddr, admin, jpath, "-postgres", dsn, "-backup-every", "1s")...)
	r.waitLog(t, 30*time.Second, "relay listening")
	ch := startChildAt(t, relayAddr, "c", 1)

	waitFor(t, "a backup round with items", 30*time.Second, func() bool {
		v, _ := perf.Scrape(admin, "tickrelay_backup_items_total")
		return v > 0
	})
	pg.Stop("fast")
	downAt := ch.LastSeq()
	waitFor(t, "a failed backup round", 20*time.Second, func() bool {
		v, _ := perf.Scrape(admin, "tickrelay_backup_failures_total")
		return v >= 1
	})
	time.Sleep(2 * time.Second) // down for a few seconds while items arrive
	backlog, ok := perf.Scrape(admin, "tickrelay_backup_backlog_items")
	if !ok || backlog <= 0 {
		t.Fatalf("backlog metric while Postgres is down: %v (present %v)", backlog, ok)
	}
	t.Logf("Postgres down from child seq %d; backlog %v items while down", downAt, backlog)
	pg.Start()

	waitFor(t, "the child to get everything", 50*time.Second, func() bool { return ch.LastSeq() == total })
	waitFor(t, "a round after the restart to catch up", 30*time.Second, func() bool {
		v, ok := perf.Scrape(admin, "tickrelay_backup_backlog_items")
		h, _ := perf.Scrape(admin, "tickrelay_journal_last_seq")
		return ok && v == 0 && h == total
	})
	failures, _ := perf.Scrape(admin, "tickrelay_backup_failures_total")
	t.Logf("%v failed rounds while Postgres was down", failures)
	checkTable(t, dsn, "tickrelay_items", ex, total)
	r.stop(t, 30*time.Second)
	checkChild(t, ch, ex, total)
}

// attr returns the value of key=value in a slog text line.
func attr(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestRootRefusesBadJournal: a corrupt, truncated, holed or locked journal
// stops `tickrelay root` before it listens, with exit status 1 and an error
// naming the file.
func TestRootRefusesBadJournal(t *testing.T) {
	// A good journal to damage: 20k items over several pages, committed at
	// Close only, so its blocks (one bbolt key per block) are 1..256,
	// 257..512, ...
	good := filepath.Join(t.TempDir(), "good.journal")
	j, err := journal.Open(good, journal.Options{SyncPolicy: journal.SyncNone, Logger: testLogger(),
		CommitEvery: time.Hour, CommitItems: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 20_000; seq++ {
		body := make([]byte, 40)
		binary.LittleEndian.PutUint64(body, seq)
		if err := j.Append(seq, int64(seq), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"corrupt", func(t *testing.T, path string) {
			b := append([]byte(nil), goodBytes...)
			for i := 0; i < 8192 && i < len(b); i++ { // both meta pages
				b[i] = byte(i*7 + 3)
			}
			writeFile(t, path, b)
		}, "not a valid journal"},
		{"truncated", func(t *testing.T, path string) {
			// bbolt grows the file in 16 MiB steps: cut below the data's end.
			writeFile(t, path, goodBytes[:64<<10])
		}, "is truncated"},
		{"hole", func(t *testing.T, path string) {
			writeFile(t, path, goodBytes)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				var k [8]byte
				binary.BigEndian.PutUint64(k[:], 769) // the block 769..1024
				if tx.Bucket([]byte("items")).Get(k[:]) == nil {
					return errors.New("no block at seq 769")
				}
				return tx.Bucket([]byte("items")).Delete(k[:])
			})
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "has a hole: epoch 0 seqs 769..1024 are missing"},
		{"locked", func(t *testing.T, path string) {
			writeFile(t, path, goodBytes)
			j, err := journal.Open(path, journal.Options{Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { j.Close() })
		}, "locked by another process"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.name+".journal")
			tc.damage(t, path)
			relayAddr, admin := freeAddr(t), freeAddr(t)
			p := startProc(t, "root", rootArgs(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, relayAddr, admin, path)...)
			if code := p.exited(t, 30*time.Second); code != 1 {
				t.Fatalf("exit status %d, want 1", code)
			}
			out := p.out.String()
			if !strings.Contains(out, "tickrelay root: journal: "+path) || !strings.Contains(out, tc.want) {
				t.Fatalf("error does not name the file and the problem (%q):\n%s", tc.want, out)
			}
			if strings.Contains(out, "relay listening") || strings.Contains(out, "admin listening") {
				t.Fatalf("the root listened before refusing the journal:\n%s", out)
			}
			for _, a := range []string{relayAddr, admin} {
				if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
					c.Close()
					t.Fatalf("something listens on %s", a)
				}
			}
			t.Logf("%s", tail(out, 1))
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChildOlderThanRingFromJournal: with a 4096-item ring, a child that
// asks for seq 1 after 50k items is served from the journal and handed over
// to the ring without a SeqGone: it gets every seq exactly once.
func TestChildOlderThanRingFromJournal(t *testing.T) {
	const total = 50_000
	ex := startExchange(t, 0, 300, total)
	relayAddr, admin := freeAddr(t), freeAddr(t)
	jpath := filepath.Join(t.TempDir(), "root.journal")
	r := startProc(t, "root", rootArgs(ex.Addr(), relayAddr, admin, jpath, "-ring-size", "4096")...)
	r.waitLog(t, 30*time.Second, "relay listening")
	waitFor(t, "the root to take the whole stream", 45*time.Second, func() bool {
		v, _ := perf.Scrape(admin, "tickrelay_root_ring_head")
		return v == total
	})
	if first, _ := perf.Scrape(admin, "tickrelay_root_ring_first"); first <= 1 {
		t.Fatalf("ring first %v: the ring still holds seq 1, nothing to test", first)
	}
	ch := startChildAt(t, relayAddr, "old", 1)
	waitFor(t, "the child to catch up", 45*time.Second, func() bool { return ch.LastSeq() == total })
	if v, ok := perf.Scrape(admin, `tickrelay_root_child_errors_total{code="seq_gone"}`); ok && v != 0 {
		t.Fatalf("root sent %v SeqGone errors", v)
	}
	checkChild(t, ch, ex, total)
	verifyResume(t, ch, ex, 1, total)
	r.stop(t, 30*time.Second)
}

// TestRootKill9AtEpochChange: a root process with a journal is killed with
// SIGKILL just before or just after the exchange's Sequence Reset, and
// started again on the journal. It resumes in the right epoch at the right
// seq (the journal's last + 1, or the new epoch's start when the journal
// had none of it), the child ends with every item of both epochs once,
// and the journal holds each epoch whole.
func TestRootKill9AtEpochChange(t *testing.T) {
	const epoch, resetAt, total = 500, 30_000, 60_000
	for _, when := range []string{"before", "after"} {
		t.Run(when, func(t *testing.T) {
			cfg := feed.DefaultConfig()
			// 10k msgs/s: the child must be on before the reset (3 s in),
			// which a loaded box missed at 40k (0.75 s).
			cfg.Addr, cfg.Rate, cfg.Symbols, cfg.Seed = "127.0.0.1:0", 10_000, 200, 3
			cfg.Epoch, cfg.ResetAt, cfg.MaxSeq, cfg.Logger = epoch, resetAt, total, testLogger()
			cfg.StartOnLogon = true // a fresh root logs on to the current epoch: let it be the first
			ex, err := feed.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			daemontest.Start(t, "exchange", ex)
			relayAddr, admin := freeAddr(t), freeAddr(t)
			jpath := filepath.Join(t.TempDir(), "root.journal")
			args := rootArgs(ex.Addr(), relayAddr, admin, jpath)
			r1 := startProc(t, "root (first)", args...)
			r1.waitLog(t, 30*time.Second, "relay listening")
			ch := startChildAt(t, relayAddr, "c", 1)
			waitFor(t, "the kill point", 45*time.Second, func() bool {
				if when == "before" {
					return ch.Epoch() == epoch && ch.LastSeq() >= resetAt/2
				}
				return ch.Epoch() == epoch+1
			})
			if when == "before" { // hold the exchange short of its reset until the root is back
				ex.Pause()
				defer ex.Resume()
				if ex.Published() >= resetAt {
					t.Fatalf("the exchange passed its reset (%d) before the pause", ex.Published())
				}
			}
			r1.kill9(t)
			t.Logf("killed with the child at epoch %d seq %d", ch.Epoch(), ch.LastSeq())

			r2 := startProc(t, "root (restarted)", args...)
			r2.waitLog(t, 30*time.Second, "exchange session up")
			ex.Resume()
			waitFor(t, "the child to get everything", 45*time.Second, func() bool {
				return ch.Epoch() == epoch+1 && ch.LastSeq() == total-resetAt
			})
			r2.stop(t, 30*time.Second)
			if items, lost := testutil.ToFloat64(ch.Metrics().Items), testutil.ToFloat64(ch.Metrics().LostItems); items != total || lost != 0 {
				t.Fatalf("child parsed %v items and lost %v, want %d and 0", items, lost, total)
			}
			j, err := journal.Open(jpath, journal.Options{Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			next := wire.Pos(epoch, 1)
			err = j.Range(1, func(pos uint64, _ []byte) bool {
				if pos != next {
					if next != wire.Pos(epoch, resetAt+1) || pos != wire.Pos(epoch+1, 1) {
						return false
					}
				}
				next = pos + 1
				return true
			})
			if err != nil || next != wire.Pos(epoch+1, total-resetAt+1) {
				t.Fatalf("journal holds epoch %d up to seq %d (%v), want both epochs whole", wire.PosEpoch(next), wire.PosSeq(next)-1, err)
			}
		})
	}
}
