package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/daemontest"
	"tickrelay/internal/pgtest"
	"tickrelay/root/backup"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

var _ backup.Source = (*journal.Journal)(nil)

func body(seq uint64) []byte {
	m := wire.Msg{Type: wire.TypeTrade, Security: uint32(seq%500 + 1), TradeID: uint32(seq), Price: 1000, Qty: 100}
	f, ok := wire.AppendMsgFrame(nil, seq, int64(seq)*1000+7, &m)
	if !ok {
		panic("bad msg")
	}
	return f[wire.FeedLenSize:]
}

func recvOf(seq uint64) int64 { return 1_700_000_000_000_000_000 + int64(seq)*1000 }

var quiet = slog.New(slog.DiscardHandler)

func newJournal(t testing.TB, n uint64) *journal.Journal {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "j.db"), journal.Options{SyncPolicy: journal.SyncNone, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	appendTo(t, j, n)
	return j
}

func appendTo(t testing.TB, j *journal.Journal, n uint64) {
	t.Helper()
	for s := j.LastSeq() + 1; s <= n; s++ {
		if err := j.Append(s, recvOf(s), body(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
}

func newBackup(t testing.TB, dsn string, src backup.Source, mod func(*backup.Config)) *backup.Backup {
	t.Helper()
	cfg := backup.DefaultConfig()
	cfg.DSN = dsn
	cfg.Source = src
	cfg.Logger = quiet
	cfg.ChunkItems = 3000
	if mod != nil {
		mod(&cfg)
	}
	b, err := backup.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// connect opens a connection to dsn for the test, closed at its end.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// checkRows asserts the table holds exactly seqs 1..n once each.
func checkRows(t testing.TB, dsn, table string, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var count, distinct, lo, hi int64
	err = conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT seq), coalesce(min(seq),0), coalesce(max(seq),0) FROM "+table).
		Scan(&count, &distinct, &lo, &hi)
	if err != nil {
		t.Fatal(err)
	}
	if count != int64(n) || distinct != int64(n) || (n > 0 && (lo != 1 || hi != int64(n))) {
		t.Fatalf("%s: count %d distinct %d seqs %d..%d, want %d rows 1..%d", table, count, distinct, lo, hi, n, n)
	}
	// Spot-check the columns of a few rows against what was journaled.
	for _, seq := range []uint64{1, n / 2, n} {
		if seq == 0 {
			continue
		}
		var exch, recv int64
		var typ int16
		var sym *string
		var b []byte
		err := conn.QueryRow(ctx, "SELECT exch_send, root_recv, msg_type, symbol, body FROM "+table+" WHERE seq = $1", int64(seq)).
			Scan(&exch, &recv, &typ, &sym, &b)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		wantSym := string(wire.AppendSymbol(nil, uint32(seq%500+1)))
		if exch != int64(seq)*1000+7 || recv != recvOf(seq) || typ != int16(wire.TypeTrade) ||
			sym == nil || *sym != wantSym || !bytes.Equal(b, body(seq)) {
			t.Fatalf("seq %d: row exch %d recv %d type %d sym %v body %x", seq, exch, recv, typ, sym, b)
		}
	}
}

func TestRoundCopiesAllIdempotently(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	const n = 20_000
	j := newJournal(t, n)
	b := newBackup(t, dsn, j, nil)
	ctx := t.Context()
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if j.BackedUp() != n {
		t.Fatalf("watermark %d, want %d", j.BackedUp(), n)
	}
	checkRows(t, dsn, "tickrelay_items", n)

	// Nothing new: a no-op round.
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Watermark lost (say, an old journal file): everything is sent again,
	// no duplicates.
	if err := j.SetBackedUp(0); err != nil {
		t.Fatal(err)
	}
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, dsn, "tickrelay_items", n)
	// A fresh Backup (new connection, as after a restart) with a partly
	// overlapping range and new items.
	if err := j.SetBackedUp(n / 2); err != nil {
		t.Fatal(err)
	}
	appendTo(t, j, n+5000)
	b.Close()
	b2 := newBackup(t, dsn, j, nil)
	if err := b2.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, dsn, "tickrelay_items", n+5000)
	if j.BackedUp() != n+5000 {
		t.Fatalf("watermark %d", j.BackedUp())
	}
}

func TestMigrate(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	ctx := t.Context()
	conn := connect(t, dsn)
	for range 2 {
		if err := backup.Migrate(ctx, conn, "items_x"); err != nil {
			t.Fatal(err)
		}
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT version FROM tickrelay_schema_version WHERE tbl = 'items_x'").Scan(&v); err != nil || v != backup.SchemaVersion {
		t.Fatalf("version %d err %v", v, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE tickrelay_schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if err := backup.Migrate(ctx, conn, "items_x"); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema: %v", err)
	}
	if err := backup.Migrate(ctx, conn, "bad;name"); err == nil {
		t.Fatal("bad table name accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	j := newJournal(t, 0)
	cfg := backup.DefaultConfig()
	cfg.Source = j
	for _, tc := range []struct {
		mod  func(*backup.Config)
		want string
	}{
		{func(c *backup.Config) {}, "DSN"},
		{func(c *backup.Config) { c.DSN = "postgres://x/y"; c.Table = "x; drop" }, "Table"},
		{func(c *backup.Config) { c.DSN = "postgres://x/y"; c.Every = 0 }, "Every"},
		{func(c *backup.Config) { c.DSN = "postgres://x/y"; c.ChunkItems = 0 }, "ChunkItems"},
		{func(c *backup.Config) { c.DSN = "postgres://x/y"; c.Source = nil }, "Source"},
	} {
		c := cfg
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error naming %s, got %v", tc.want, err)
		}
	}
}

// proxy is a TCP forwarder standing in for the network path to PostgreSQL:
// Down closes its listener and every connection (PostgreSQL "stopped"), Up
// listens again on the same port. With cutAfter > 0 it goes down by itself
// once that many bytes went from client to server: mid-round.
type proxy struct {
	t        testing.TB
	addr     string
	target   string
	cutAfter atomic.Int64
	sent     atomic.Int64

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.Down(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln {
				p.mu.Unlock()
				c.Close()
				up.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(up, c, true) })
			p.wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
}

func (p *proxy) pipe(dst, src net.Conn, count bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if lim := p.cutAfter.Load(); count && lim > 0 && p.sent.Add(int64(n)) > lim {
				p.cutAfter.Store(0)
				go p.Down()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Down stops accepting (connection refused) and kills every connection.
func (p *proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Up listens on the same address again.
func (p *proxy) Up() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy up on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *proxy) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ln == nil
}

// viaProxy rewrites a URL DSN to go through addr.
func viaProxy(t testing.TB, dsn, addr string) (target, proxied string) {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("need a URL DSN with host:port, got %q", dsn)
	}
	target = u.Host
	u.Host = addr
	return target, u.String()
}

func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestPostgresDownMidRound(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	u, _ := url.Parse(dsn)
	p := newProxy(t, u.Host)
	_, pdsn := viaProxy(t, dsn, p.addr)
	const n = 30_000
	j := newJournal(t, n)
	reg := prometheus.NewRegistry()
	b := newBackup(t, pdsn, j, func(c *backup.Config) {
		c.ChunkItems = 2000
		c.Registerer = reg
		c.ConnectTimeout = 2 * time.Second
	})
	// Cut the line about a third of the way through the round's COPY data.
	p.cutAfter.Store(n * 100 / 3)
	err := b.RunOnce(t.Context())
	if err == nil {
		t.Fatal("round through a cut connection succeeded")
	}
	if !p.isDown() {
		t.Fatal("proxy never cut")
	}
	t.Logf("round error: %v", err)
	if !strings.Contains(err.Error(), "backup:") {
		t.Fatalf("unclear error: %v", err)
	}
	mid := j.BackedUp()
	if mid == 0 || mid >= n {
		t.Fatalf("watermark %d after a mid-round cut, want 0 < w < %d", mid, n)
	}
	if bl := gauge(t, reg, "tickrelay_backup_backlog_items"); bl != float64(n-mid) || bl <= 0 {
		t.Fatalf("backlog metric %v, want %d", bl, n-mid)
	}
	if f := gauge(t, reg, "tickrelay_backup_failures_total"); f != 1 {
		t.Fatalf("failures %v", f)
	}
	// Still down: the round fails fast and clearly; the journal keeps it all.
	err = b.RunOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("round with PostgreSQL down: %v", err)
	}
	t.Logf("down: %v", err)
	if j.BackedUp() != mid || j.LastSeq() != n {
		t.Fatalf("journal changed while down: backed %d last %d", j.BackedUp(), j.LastSeq())
	}
	appendTo(t, j, n+1000) // the feed goes on
	// PostgreSQL back: the next round completes, each seq exactly once.
	p.Up()
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkRows(t, dsn, "tickrelay_items", n+1000)
	if bl := gauge(t, reg, "tickrelay_backup_backlog_items"); bl != 0 {
		t.Fatalf("backlog %v after recovery", bl)
	}
	if ls := gauge(t, reg, "tickrelay_backup_last_success_unixtime"); ls < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success %v", ls)
	}
}

func TestRunRetriesAndFinalRound(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	u, _ := url.Parse(dsn)
	p := newProxy(t, u.Host)
	_, pdsn := viaProxy(t, dsn, p.addr)
	p.Down()
	j := newJournal(t, 5000)
	var logs daemontest.Buffer
	b := newBackup(t, pdsn, j, func(c *backup.Config) {
		c.Every = 2 * time.Second // backoff 1s, then capped at 2s
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	// The first round (at once) fails: one clear line with the next retry.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "backup round failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "next_retry=") || !strings.Contains(l, "backlog=5000") {
		t.Fatalf("failure line lacks retry time or backlog: %s", l)
	}
	p.Up()
	for j.BackedUp() != 5000 {
		if time.Now().After(deadline) {
			t.Fatalf("never recovered; watermark %d; logs: %s", j.BackedUp(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Items appended just before shutdown go out in the final round.
	appendTo(t, j, 7000)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if j.BackedUp() != 7000 {
		t.Fatalf("final round: watermark %d", j.BackedUp())
	}
	checkRows(t, dsn, "tickrelay_items", 7000)
}

func TestRoundWithoutServerFailsClearly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port
	j := newJournal(t, 10)
	b := newBackup(t, "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2", j, nil)
	err = b.RunOnce(t.Context())
	if err == nil || !strings.Contains(err.Error(), "connect") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("closed port: %v", err)
	}
	var oe *net.OpError
	t.Logf("closed port: %v (net error: %v)", err, errors.As(err, &oe))
	if j.BackedUp() != 0 {
		t.Fatal("watermark moved")
	}
}

// BenchmarkBackupRound copies 200k journal items into PostgreSQL in one
// round (a new table each time, so rows take the direct COPY path; with the
// default 2 connections and with 1), and again over the same table (every
// row a re-send, through staging). items/s counts RunOnce only.
func BenchmarkBackupRound(b *testing.B) {
	const n = 200_000
	dsn := pgtest.Fresh(b, pgtest.DSN(b))
	j := newJournal(b, n)
	for _, mode := range []string{"new", "new-p1", "resend"} {
		b.Run(mode, func(b *testing.B) {
			par := 2
			if mode == "new-p1" {
				par = 1
			}
			b.ReportAllocs()
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				table := fmt.Sprintf("bench_%s_%d", strings.ReplaceAll(mode, "-", "_"), i)
				if mode == "resend" {
					table = "bench_resend"
				}
				bk := newBackup(b, dsn, j, func(c *backup.Config) {
					c.Table = table
					c.ChunkItems = 50_000
					c.Parallel = par
				})
				if err := j.SetBackedUp(0); err != nil {
					b.Fatal(err)
				}
				if mode == "resend" && i == 0 {
					if err := bk.RunOnce(b.Context()); err != nil { // fill it first
						b.Fatal(err)
					}
					if err := j.SetBackedUp(0); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				if err := bk.RunOnce(b.Context()); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				bk.Close()
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "items/s")
		})
	}
}

// TestEpochs: items of several epochs, the same seqs in each, are each
// backed up once, keyed by (epoch, seq).
func TestEpochs(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	j := newJournal(t, 300) // epoch 0: seqs 1..300, as before epochs
	for _, epoch := range []uint32{7, 8} {
		for s := uint64(1); s <= 200; s++ {
			if err := j.Append(wire.Pos(epoch, s), recvOf(s), body(s)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	b := newBackup(t, dsn, j, nil)
	ctx := t.Context()
	for range 2 { // the second round re-sends nothing
		if err := b.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if j.BackedUp() != wire.Pos(8, 200) {
		t.Fatalf("watermark %x", j.BackedUp())
	}
	if err := j.SetBackedUp(wire.Pos(7, 100)); err != nil { // re-send across an epoch: no duplicate
		t.Fatal(err)
	}
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	rows, err := conn.Query(ctx, "SELECT epoch, count(*), count(DISTINCT seq), min(seq), max(seq) FROM tickrelay_items GROUP BY epoch ORDER BY epoch")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var e, n, d, lo, hi int64
		if err := rows.Scan(&e, &n, &d, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%d/%d %d..%d", e, n, d, lo, hi))
	}
	if want := "[0:300/300 1..300 7:200/200 1..200 8:200/200 1..200]"; fmt.Sprint(got) != want {
		t.Fatalf("rows by epoch %v, want %s", got, want)
	}
}

// TestMigrateFromVersion1: a table of the build before epochs (seq the
// key) becomes (epoch, seq), its rows epoch 0, none lost; the backup then
// adds a later epoch's rows with the same seqs beside them.
func TestMigrateFromVersion1(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	ctx := t.Context()
	conn := connect(t, dsn)
	for _, q := range []string{
		`CREATE TABLE tickrelay_schema_version (tbl text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO tickrelay_schema_version (tbl, version) VALUES ('tickrelay_items', 1)`,
		`CREATE TABLE tickrelay_items (seq bigint PRIMARY KEY, exch_send bigint NOT NULL, root_recv bigint NOT NULL,
			msg_type smallint NOT NULL, symbol text, body bytea NOT NULL)`,
		`INSERT INTO tickrelay_items SELECT s, s, s, 50, 'x', '\x00' FROM generate_series(1, 1000) s`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	j := newJournal(t, 0)
	for s := uint64(1); s <= 500; s++ {
		if err := j.Append(wire.Pos(3, s), recvOf(s), body(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := newBackup(t, dsn, j, nil).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var v, old, later, keyCols int
	if err := conn.QueryRow(ctx, "SELECT version FROM tickrelay_schema_version WHERE tbl = 'tickrelay_items'").Scan(&v); err != nil || v != backup.SchemaVersion {
		t.Fatalf("version %d %v", v, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE epoch = 0), count(*) FILTER (WHERE epoch = 3) FROM tickrelay_items").Scan(&old, &later); err != nil || old != 1000 || later != 500 {
		t.Fatalf("rows: epoch 0 %d, epoch 3 %d, %v", old, later, err)
	}
	if err := conn.QueryRow(ctx, `SELECT array_length(conkey, 1) FROM pg_constraint WHERE conrelid = 'tickrelay_items'::regclass AND contype = 'p'`).Scan(&keyCols); err != nil || keyCols != 2 {
		t.Fatalf("primary key of %d columns: %v", keyCols, err)
	}
}
