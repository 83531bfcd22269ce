// Package backup copies the root's journal into PostgreSQL, once a minute by
// default, after the journal's backed-up watermark.
//
// A round reads the items after the watermark in chunks (ChunkItems), encodes
// each chunk straight into PostgreSQL's binary COPY format in one reused
// buffer (no per-row allocation, no per-row interface values), streams it
// with COPY and commits; only then does it advance the watermark
// (Source.SetBackedUp). Re-sending a range never creates a duplicate row:
// the table's primary key is (epoch, seq) and rows that may already exist go
// through a staging table and INSERT ... ON CONFLICT (epoch, seq) DO NOTHING.
// Rows that cannot exist yet (above the highest one in the table, the normal case)
// are copied straight into the table; should that COPY hit a duplicate after
// all (another writer), the chunk is redone through the staging table.
//
// Table layout:
//
//	epoch     bigint              exchange epoch (0: stored before epochs); PRIMARY KEY (epoch, seq)
//	seq       bigint              exchange seq within the epoch
//	exch_send bigint              exchange send time, ns (feed header)
//	root_recv bigint              root receive time, ns
//	msg_type  smallint            OMD message type
//	symbol    text                wire.AppendSymbol of the security code (NULL if none)
//	body      bytea               the feed body, headers included
//
// Schema versions live in tickrelay_schema_version (one row per table);
// migrations run at connect under an advisory lock. Version 2 added epoch:
// the rows of a version 1 table keep their seq and get epoch 0, the
// journal's epoch for what it stored before epochs, so nothing is lost and
// nothing of a later epoch can collide with them.
//
// The session runs with synchronous_commit=on whatever the server default,
// because the watermark advances as soon as COMMIT returns.
//
// PostgreSQL down: the round fails and is logged (one line with the error
// and the next retry time); Run retries with exponential backoff capped at
// Every; the journal keeps the items (with journal.Options.RequireBackup its
// retention never passes the watermark). The connection is dropped after any
// failure and made again by the next round.
package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/wire"
)

// Source is what a backup reads: the journal satisfies it.
type Source interface {
	// Range calls fn for each item with seq >= from in order until fn returns
	// false; item is the relay item encoding, valid only during fn.
	Range(from uint64, fn func(seq uint64, item []byte) bool) error
	BackedUp() uint64
	SetBackedUp(seq uint64) error
	LastSeq() uint64
}

// durableSource is a Source that knows which of its items are committed
// (the journal): a round then copies only those.
type durableSource interface {
	DurableSeq() uint64
}

// SchemaVersion is the table layout this package writes.
const SchemaVersion = 2

// Config configures a Backup.
type Config struct {
	DSN            string        // PostgreSQL connection string (URL or key=value)
	Every          time.Duration // time between rounds (1m)
	Table          string        // table name, optionally schema-qualified ("tickrelay_items")
	ChunkItems     int           // items per COPY and commit (50,000)
	Parallel       int           // connections copying chunks at once (2)
	ConnectTimeout time.Duration // per connection attempt (10s)
	FinalTimeout   time.Duration // bound on the final round at shutdown (30s)
	Source         Source
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// DefaultConfig returns the defaults; DSN and Source must be set.
func DefaultConfig() Config {
	return Config{
		Every:          time.Minute,
		Table:          "tickrelay_items",
		ChunkItems:     50_000,
		Parallel:       2,
		ConnectTimeout: 10 * time.Second,
		FinalTimeout:   30 * time.Second,
	}
}

var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)

// Validate reports the first bad field by name.
func (c Config) Validate() error {
	switch {
	case c.DSN == "":
		return errors.New("backup: DSN is empty")
	case c.Source == nil:
		return errors.New("backup: Source is nil")
	case c.Every <= 0:
		return fmt.Errorf("backup: Every %v must be > 0", c.Every)
	case !tableRE.MatchString(c.Table):
		return fmt.Errorf("backup: Table %q is not a plain [schema.]name identifier", c.Table)
	case c.ChunkItems <= 0:
		return fmt.Errorf("backup: ChunkItems %d must be > 0", c.ChunkItems)
	case c.Parallel < 1 || c.Parallel > 16:
		return fmt.Errorf("backup: Parallel %d must be in 1..16", c.Parallel)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("backup: ConnectTimeout %v must be > 0", c.ConnectTimeout)
	case c.FinalTimeout <= 0:
		return fmt.Errorf("backup: FinalTimeout %v must be > 0", c.FinalTimeout)
	}
	if _, err := pgx.ParseConfig(c.DSN); err != nil {
		return fmt.Errorf("backup: DSN: %w", err)
	}
	return nil
}

// Backup copies a Source into PostgreSQL. Create it with New.
type Backup struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	table string // sanitized identifier
	sql   struct{ copyMain, copyStage, insert, stage string }

	mu     sync.Mutex // serializes rounds; guards conns and free
	conns  []*pgx.Conn
	free   []*chunk      // reusable chunk buffers
	maxSeq atomic.Uint64 // highest position (wire.Pos) known to be in the table
}

// New validates cfg and builds a Backup; it connects to nothing yet.
func New(cfg Config) (*Backup, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Backup{cfg: cfg, log: cfg.Logger.With("backup", cfg.Table)}
	b.table = pgx.Identifier(strings.Split(cfg.Table, ".")).Sanitize()
	const cols = "(epoch, seq, exch_send, root_recv, msg_type, symbol, body)"
	b.sql.copyMain = "COPY " + b.table + " " + cols + " FROM STDIN (FORMAT binary)"
	b.sql.copyStage = "COPY tickrelay_stage " + cols + " FROM STDIN (FORMAT binary)"
	b.sql.insert = "INSERT INTO " + b.table + " " + cols + " SELECT epoch, seq, exch_send, root_recv, msg_type, symbol, body FROM tickrelay_stage ON CONFLICT (epoch, seq) DO NOTHING"
	b.sql.stage = "CREATE TEMP TABLE IF NOT EXISTS tickrelay_stage (LIKE " + b.table + ") ON COMMIT DELETE ROWS"
	m, err := newMetrics(cfg.Registerer, cfg.Source)
	if err != nil {
		return nil, err
	}
	b.m = m
	return b, nil
}

// Run does a round at once, then one every Every (after a failure, sooner:
// exponential backoff from 1s capped at Every), and a final round when ctx
// ends, bounded by FinalTimeout. It returns nil after that final round; its
// failure is logged, not returned (the journal still holds the items).
func (b *Backup) Run(ctx context.Context) error {
	defer b.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), b.cfg.FinalTimeout)
			err := b.RunOnce(fctx)
			cancel()
			if err != nil {
				b.log.Error("backup: final round failed; the journal keeps the items", "err", err,
					"backlog", backlog(b.cfg.Source))
			}
			return nil
		case <-timer.C:
		}
		err := b.RunOnce(ctx)
		switch {
		case err == nil:
			backoff = 0
			timer.Reset(b.cfg.Every)
		case ctx.Err() != nil:
			timer.Reset(0) // the final round follows
		default:
			backoff = min(max(2*backoff, time.Second), b.cfg.Every)
			b.log.Error("backup round failed", "err", err, "backlog", backlog(b.cfg.Source),
				"retry_in", backoff, "next_retry", time.Now().Add(backoff).Format(time.RFC3339))
			timer.Reset(backoff)
		}
	}
}

// RunOnce does one round: it copies every item after the watermark up to
// the Source's LastSeq at the start of the round (its DurableSeq, if it has
// one: uncommitted journal items wait for the next round).
func (b *Backup) RunOnce(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	n, err := b.round(ctx)
	b.m.items.Add(float64(n))
	var nc int
	if err == nil {
		nc, err = b.controlRound(ctx)
	}
	if err != nil {
		b.m.failures.Inc()
		b.closeConnLocked()
		return err
	}
	b.m.rounds.Inc()
	b.m.roundSeconds.Observe(time.Since(start).Seconds())
	b.m.lastSuccess.Set(float64(time.Now().Unix()))
	if n > 0 || nc > 0 {
		b.log.Info("backup round done", "items", n, "control_records", nc, "epoch", wire.PosEpoch(b.cfg.Source.BackedUp()), "backed_up", wire.PosSeq(b.cfg.Source.BackedUp()),
			"took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// chunk is one COPY stream in flight: encoded by the round's goroutine,
// committed by a worker.
type chunk struct {
	first, end uint64
	rows       int
	buf        []byte // COPY binary format
	rd         bytes.Reader
	err        error
	done       chan struct{}
}

// round copies everything after the watermark up to LastSeq. Chunks are
// encoded in order and committed by up to Parallel connections at once; the
// watermark advances in order, to the end of the last chunk whose
// predecessors all committed. A chunk committed past a failed one is simply
// re-sent next round (staging path, no duplicate).
func (b *Backup) round(ctx context.Context) (int, error) {
	src := b.cfg.Source
	last := src.LastSeq()
	if d, ok := src.(durableSource); ok {
		// Only what the journal has committed: a row in PostgreSQL (and the
		// watermark) never runs ahead of what survives a crash of the root.
		last = min(last, d.DurableSeq())
	}
	if src.BackedUp() >= last {
		return 0, nil
	}
	if err := b.connect(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *chunk)
	var wg sync.WaitGroup
	for _, conn := range b.conns {
		wg.Go(func() {
			for c := range jobs {
				c.err = b.sendChunk(ctx, conn, c)
				close(c.done)
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)

	var queue []*chunk // in flight, in seq order
	total := 0
	next := src.BackedUp() + 1
	var firstErr error
	// finish waits for the oldest chunk in flight and advances the watermark.
	finish := func() {
		c := queue[0]
		queue = queue[1:]
		<-c.done
		if firstErr == nil && c.err != nil {
			firstErr = fmt.Errorf("backup: epoch %d seqs %d..%d: %w", wire.PosEpoch(c.first), wire.PosSeq(c.first), wire.PosSeq(c.end), c.err)
			cancel() // stop the others; what they committed is re-sent next round
		}
		if firstErr == nil {
			if err := src.SetBackedUp(c.end); err != nil {
				firstErr = fmt.Errorf("backup: epoch %d seqs %d..%d copied but the watermark was not saved: %w", wire.PosEpoch(c.first), wire.PosSeq(c.first), wire.PosSeq(c.end), err)
				cancel()
			} else {
				total += c.rows
			}
		}
		b.free = append(b.free, c)
	}
	for firstErr == nil && next <= last {
		if len(queue) > len(b.conns) { // one more is encoded while all connections copy
			finish()
			continue
		}
		c := b.getChunk()
		if err := b.encodeChunk(c, next, last); err != nil {
			b.free = append(b.free, c)
			firstErr = err
			break
		}
		if c.rows == 0 {
			b.free = append(b.free, c)
			break // nothing stored from next on (retention ran without RequireBackup)
		}
		// A later epoch starts where it starts; within one, a jump is loss.
		if c.first > next && (wire.PosEpoch(c.first) == wire.PosEpoch(next) || wire.PosSeq(c.first) > 1) {
			from := max(next, wire.Pos(wire.PosEpoch(c.first), 1))
			b.log.Warn("backup: items missing from the journal were never backed up", "epoch", wire.PosEpoch(c.first), "from", wire.PosSeq(from), "to", wire.PosSeq(c.first-1))
		}
		next = c.end + 1
		queue = append(queue, c)
		select {
		case jobs <- c:
		case <-ctx.Done():
			c.err = ctx.Err()
			close(c.done)
		}
	}
	for len(queue) > 0 {
		finish()
	}
	return total, firstErr
}

func (b *Backup) getChunk() *chunk {
	var c *chunk
	if n := len(b.free); n > 0 {
		c, b.free = b.free[n-1], b.free[:n-1]
	} else {
		c = &chunk{}
	}
	c.done = make(chan struct{})
	c.err = nil
	return c
}

// encodeChunk reads up to ChunkItems items from `from` (at most to last)
// into c.buf as a complete COPY binary stream.
func (b *Backup) encodeChunk(c *chunk, from, last uint64) error {
	c.buf = append(c.buf[:0], copyHeader...)
	c.rows, c.first, c.end = 0, 0, 0
	err := b.cfg.Source.Range(from, func(seq uint64, item []byte) bool {
		if seq > last {
			return false
		}
		if c.rows == 0 {
			c.first = seq
		}
		c.buf = appendRow(c.buf, seq, item)
		c.end = seq
		c.rows++
		return c.rows < b.cfg.ChunkItems && seq < last
	})
	if err != nil {
		return fmt.Errorf("backup: read journal from seq %d: %w", from, err)
	}
	c.buf = append(c.buf, 0xff, 0xff) // trailer: field count -1
	return nil
}

// sendChunk copies one chunk in one transaction: straight into the table
// when no row at or above its first seq can exist yet, else (or after a
// duplicate key) through the staging table.
func (b *Backup) sendChunk(ctx context.Context, conn *pgx.Conn, c *chunk) error {
	direct := c.first > b.maxSeq.Load()
	for {
		err := b.copyTx(ctx, conn, c, direct)
		var pgErr *pgconn.PgError
		if direct && errors.As(err, &pgErr) && pgErr.Code == "23505" {
			b.log.Warn("backup: rows already present; redoing the chunk through the staging table", "epoch", wire.PosEpoch(c.first), "first", wire.PosSeq(c.first), "end", wire.PosSeq(c.end))
			direct = false
			continue
		}
		if err != nil {
			return err
		}
		for {
			old := b.maxSeq.Load()
			if old >= c.end || b.maxSeq.CompareAndSwap(old, c.end) {
				return nil
			}
		}
	}
}

func (b *Backup) copyTx(ctx context.Context, conn *pgx.Conn, c *chunk, direct bool) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	c.rd.Reset(c.buf)
	if direct {
		if _, err := conn.PgConn().CopyFrom(ctx, &c.rd, b.sql.copyMain); err != nil {
			return fmt.Errorf("copy into %s: %w", b.table, err)
		}
	} else {
		if _, err := conn.PgConn().CopyFrom(ctx, &c.rd, b.sql.copyStage); err != nil {
			return fmt.Errorf("copy into staging: %w", err)
		}
		if _, err := tx.Exec(ctx, b.sql.insert); err != nil {
			return fmt.Errorf("insert into %s: %w", b.table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// connect makes sure Parallel open connections exist: each new one migrates
// the schema (idempotent), creates its staging table and reads the highest
// seq already stored.
func (b *Backup) connect(ctx context.Context) error {
	for i := range b.conns {
		if b.conns[i] == nil || b.conns[i].IsClosed() {
			b.closeConnLocked() // a broken one: start over with all fresh
			break
		}
	}
	if len(b.conns) == b.cfg.Parallel {
		return nil
	}
	pcfg, err := pgx.ParseConfig(b.cfg.DSN)
	if err != nil {
		return fmt.Errorf("backup: DSN: %w", err)
	}
	// The watermark moves only after COMMIT returns, so a commit must be
	// durable then, whatever the server's default (a server with
	// synchronous_commit=off loses acknowledged chunks in a crash).
	pcfg.RuntimeParams["synchronous_commit"] = "on"
	if pcfg.ConnectTimeout == 0 || pcfg.ConnectTimeout > b.cfg.ConnectTimeout {
		pcfg.ConnectTimeout = b.cfg.ConnectTimeout
	}
	for len(b.conns) < b.cfg.Parallel {
		conn, err := pgx.ConnectConfig(ctx, pcfg)
		if err != nil {
			return fmt.Errorf("backup: connect to %s:%d: %w", pcfg.Host, pcfg.Port, err)
		}
		b.conns = append(b.conns, conn)
		if err := b.prepare(ctx, conn); err != nil {
			return fmt.Errorf("backup: prepare %s: %w", b.table, err)
		}
	}
	return nil
}

func (b *Backup) prepare(ctx context.Context, conn *pgx.Conn) error {
	if err := Migrate(ctx, conn, b.cfg.Table); err != nil {
		return err
	}
	if err := b.prepareControl(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, b.sql.stage); err != nil {
		return fmt.Errorf("staging table: %w", err)
	}
	var epoch, seq int64
	err := conn.QueryRow(ctx, "SELECT epoch, seq FROM "+b.table+" ORDER BY epoch DESC, seq DESC LIMIT 1").Scan(&epoch, &seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("max seq: %w", err)
	}
	b.maxSeq.Store(wire.Pos(uint32(epoch), uint64(seq)))
	return nil
}

// Migrate brings table (a [schema.]name) to SchemaVersion, creating it if
// needed. It is safe to run concurrently from several roots.
func Migrate(ctx context.Context, conn *pgx.Conn, table string) error {
	if !tableRE.MatchString(table) {
		return fmt.Errorf("backup: table %q is not a plain [schema.]name identifier", table)
	}
	ident := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('tickrelay_schema'))"); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tickrelay_schema_version (
		tbl text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("schema_version table: %w", err)
	}
	var version int
	err = tx.QueryRow(ctx, "SELECT version FROM tickrelay_schema_version WHERE tbl = $1", table).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("table %s has schema version %d, newer than this binary's %d", table, version, SchemaVersion)
	}
	if version < 1 {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+` (
			epoch bigint NOT NULL,
			seq bigint NOT NULL,
			exch_send bigint NOT NULL,
			root_recv bigint NOT NULL,
			msg_type smallint NOT NULL,
			symbol text,
			body bytea NOT NULL,
			PRIMARY KEY (epoch, seq))`); err != nil {
			return fmt.Errorf("create %s: %w", table, err)
		}
	} else if version < 2 { // version 1: seq alone was the key
		var pkey string
		if err := tx.QueryRow(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, ident).Scan(&pkey); err != nil {
			return fmt.Errorf("migrate %s to version 2: its primary key: %w", table, err)
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+ident+` ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
			DROP CONSTRAINT `+pgx.Identifier{pkey}.Sanitize()+`, ADD PRIMARY KEY (epoch, seq)`); err != nil {
			return fmt.Errorf("migrate %s to version 2: %w", table, err)
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+ident+` ALTER COLUMN epoch DROP DEFAULT`); err != nil {
			return fmt.Errorf("migrate %s to version 2: %w", table, err)
		}
	}
	if version != SchemaVersion {
		if _, err := tx.Exec(ctx, `INSERT INTO tickrelay_schema_version (tbl, version) VALUES ($1, $2)
			ON CONFLICT (tbl) DO UPDATE SET version = excluded.version, updated_at = now()`, table, SchemaVersion); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	return tx.Commit(ctx)
}

// Close drops the connection and unregisters the metrics. Run calls it on
// return; call it yourself when only using RunOnce. It is idempotent.
func (b *Backup) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeConnLocked()
	b.m.unregister()
}

func (b *Backup) closeConnLocked() {
	for _, c := range b.conns {
		if c == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.Close(ctx)
		cancel()
	}
	b.conns = b.conns[:0]
}

// COPY binary format (PostgreSQL docs, "COPY ... Binary Format"): an
// 11-byte signature, flags i32, header extension length i32; then per row a
// field count i16 and per field a length i32 (-1 = NULL) and the value in
// network byte order; a field count of -1 ends the stream.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// appendRow appends one COPY row for the relay item at position seq (rootRecv i64 LE,
// bodyLen u16 LE, feed body). Short or odd items are stored as found, with
// zero stamps and type and a NULL symbol, rather than stopping the backup.
func appendRow(dst []byte, seq uint64, item []byte) []byte {
	le, be := binary.LittleEndian, binary.BigEndian
	var recv, exch uint64
	var msgType uint16
	var body []byte
	if len(item) >= wire.RelayItemHeader {
		recv = le.Uint64(item)
		body = item[wire.RelayItemHeader:]
	}
	if len(body) >= wire.MinFeedBody {
		exch = le.Uint64(body[8:])
		msgType = le.Uint16(body[18:])
	}
	dst = be.AppendUint16(dst, 7)
	dst = be.AppendUint32(dst, 8)
	dst = be.AppendUint64(dst, uint64(wire.PosEpoch(seq)))
	dst = be.AppendUint32(dst, 8)
	dst = be.AppendUint64(dst, wire.PosSeq(seq))
	dst = be.AppendUint32(dst, 8)
	dst = be.AppendUint64(dst, exch)
	dst = be.AppendUint32(dst, 8)
	dst = be.AppendUint64(dst, recv)
	dst = be.AppendUint32(dst, 2)
	dst = be.AppendUint16(dst, msgType)
	if code, ok := wire.SecurityOf(body); ok {
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = wire.AppendSymbol(dst, code)
		be.PutUint32(dst[at:], uint32(len(dst)-at-4))
	} else {
		dst = be.AppendUint32(dst, 0xffffffff) // NULL
	}
	dst = be.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

func backlog(src Source) uint64 { return wire.PosItems(src.BackedUp(), src.LastSeq()) }
