package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"tickrelay/wire"
)

// Sync policies.
const (
	SyncAlways = "always" // fsync every group commit (default)
	SyncNone   = "none"   // bbolt NoSync: survives a process crash, not a power cut
)

var (
	itemsBucket  = []byte("items") // blocks of items (format 2); one item per key in format 1
	metaBucket   = []byte("meta")
	keyBackedUp  = []byte("backed_up")
	keyFormat    = []byte("format")
	rangeTxItems = 4096 // items per read transaction in Range
)

// formatVersion is the file format this build writes and reads (meta
// "format", u32 big-endian). Format 1 (no "format" key) stored one bbolt key
// per item; format 2 stores one key per block of consecutive items.
const formatVersion = 2

// Block bounds: a block holds at most blockMaxItems items and, unless it is
// a single larger item, at most blockMaxBytes of them. Big enough that
// bbolt's per-key cost (node.put, cursor search, the element header) is
// spread over hundreds of items; small enough that retention, which deletes
// whole blocks only, stays fine-grained and that Range, which parses a
// block from its start, skips little. Variables so tests can shrink them.
var (
	blockMaxItems = 256
	blockMaxBytes = 64 << 10
)

// ErrClosed is returned by operations on a closed journal.
var ErrClosed = errors.New("journal: closed")

// Options configures a journal. The zero value of each field takes the
// default shown.
type Options struct {
	SyncPolicy      string        // SyncAlways (default) or SyncNone
	CommitEvery     time.Duration // longest an item waits before its group commit (5ms)
	CommitItems     int           // pending items that trigger a commit at once (4096)
	MaxPendingBytes int           // appended but uncommitted bytes before Append blocks (64 MiB)
	RetainAge       time.Duration // delete blocks whose items' rootRecv are all older (0: keep)
	RetainBytes     int64         // delete oldest blocks while the total is larger (0: no limit)
	RetainEpochs    int           // delete the blocks of all but the newest this many epochs (0: no limit)
	RetainEvery     time.Duration // how often retention runs (1s)
	RequireBackup   bool          // retention never deletes beyond BackedUp()
	LockTimeout     time.Duration // wait for the file lock, then fail (1s)
	MmapSize        int           // initial bbolt mmap size; larger avoids remaps (1 GiB)
	Now             func() int64  // clock for RetainAge, ns since the epoch (time.Now)
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
}

// Validate checks the options (after defaults are applied).
func (o Options) Validate() error {
	switch {
	case o.SyncPolicy != "" && o.SyncPolicy != SyncAlways && o.SyncPolicy != SyncNone:
		return fmt.Errorf("journal: SyncPolicy %q: want %q or %q", o.SyncPolicy, SyncAlways, SyncNone)
	case o.CommitEvery < 0:
		return fmt.Errorf("journal: CommitEvery %v < 0", o.CommitEvery)
	case o.CommitItems < 0:
		return fmt.Errorf("journal: CommitItems %d < 0", o.CommitItems)
	case o.MaxPendingBytes < 0:
		return fmt.Errorf("journal: MaxPendingBytes %d < 0", o.MaxPendingBytes)
	case o.RetainAge < 0:
		return fmt.Errorf("journal: RetainAge %v < 0", o.RetainAge)
	case o.RetainBytes < 0:
		return fmt.Errorf("journal: RetainBytes %d < 0", o.RetainBytes)
	case o.RetainEpochs < 0:
		return fmt.Errorf("journal: RetainEpochs %d < 0", o.RetainEpochs)
	case o.RetainEvery < 0:
		return fmt.Errorf("journal: RetainEvery %v < 0", o.RetainEvery)
	case o.LockTimeout < 0:
		return fmt.Errorf("journal: LockTimeout %v < 0", o.LockTimeout)
	case o.MmapSize < 0:
		return fmt.Errorf("journal: MmapSize %d < 0", o.MmapSize)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.SyncPolicy == "" {
		o.SyncPolicy = SyncAlways
	}
	if o.CommitEvery == 0 {
		o.CommitEvery = 5 * time.Millisecond
	}
	if o.CommitItems == 0 {
		o.CommitItems = 4096
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = 64 << 20
	}
	if o.RetainEvery == 0 {
		o.RetainEvery = time.Second
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.MmapSize == 0 {
		o.MmapSize = 1 << 30
	}
	if o.Now == nil {
		o.Now = func() int64 { return time.Now().UnixNano() }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// batch is a run of consecutive items in relay item encoding. Its data is
// already laid out as block values: a block is data[start(i):ends[e-1]].
type batch struct {
	first uint64 // seq of item 0
	n     int
	done  int      // items already committed (a batch may take several transactions)
	data  []byte   // items back to back
	ends  []int    // end offset of item i in data
	keys  []byte   // 8 B per block of the transaction being written (committer only)
	bends []int    // end item index of each block in keys (committer only)
	ctl   [][]byte // control records behind the items (control.go)
}

// start is the offset of item i in data.
func (b *batch) start(i int) int {
	if i == 0 {
		return 0
	}
	return b.ends[i-1]
}

func (b *batch) item(i int) []byte { return b.data[b.start(i):b.ends[i]] }

// blockEnd is the end (exclusive) of the block that starts at item i and
// may not reach past item hi: up to blockMaxItems items and blockMaxBytes,
// but always at least item i itself.
func (b *batch) blockEnd(i, hi int) int {
	e := min(i+blockMaxItems, hi)
	limit := b.start(i) + blockMaxBytes
	for e > i+1 && b.ends[e-1] > limit {
		e-- // rare: only big items get here, and the common block needs no scan
	}
	return e
}

func (b *batch) reset() {
	b.first, b.n, b.done = 0, 0, 0
	b.data, b.ends, b.keys, b.bends = b.data[:0], b.ends[:0], b.keys[:0], b.bends[:0]
	b.ctl = b.ctl[:0]
}

func newBatch(items int) *batch {
	items = min(items, 16384) // grows on demand beyond this
	return &batch{data: make([]byte, 0, items*64), ends: make([]int, 0, items)}
}

// Stats are the journal's counters, also exported as Prometheus metrics.
type Stats struct {
	Appended     uint64 // items appended
	Commits      uint64 // bbolt transactions written by group commits
	CommitErrors uint64 // failed commits (retried)
	Stalls       uint64 // Appends that waited for the disk
	Deleted      uint64 // items removed by retention
	StoredBytes  int64  // bytes of items in the file (the block values)
}

// Journal is the bbolt-backed history. Create it with Open.
type Journal struct {
	path string
	opts Options
	db   *bolt.DB
	log  *slog.Logger
	m    *metrics

	last     atomic.Uint64 // highest appended
	durable  atomic.Uint64 // highest committed
	first    atomic.Uint64 // lowest stored (0 when empty)
	backedUp atomic.Uint64

	mu            sync.Mutex // guards the fields below; see package doc
	cond          *sync.Cond // broadcast on commit, commit error and close
	pending       *batch     // appended, not yet taken by the committer
	inflight      *batch     // being committed (or failed, to retry)
	spare         *batch
	pendingBytes  int    // bytes in pending + inflight
	appendedBytes uint64 // bytes of items appended (a metric)
	closed        bool
	commitErr     error // last commit error; nil after a success
	stats         Stats
	lastRetain    time.Time

	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	retainMu  sync.Mutex // serializes Retain; taken before mu, never inside it
}

// Open opens (creating if needed) the journal file at path, checks it and
// starts the committer. A file that is corrupt, truncated, has a hole in its
// seqs or is locked by another process gives an error naming the file.
func Open(path string, opts Options) (*Journal, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	var file *os.File
	bopts := &bolt.Options{
		Timeout:         opts.LockTimeout,
		NoSync:          opts.SyncPolicy == SyncNone,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: opts.MmapSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	j := &Journal{
		path:    path,
		opts:    opts,
		log:     opts.Logger.With("journal", path),
		pending: newBatch(opts.CommitItems),
		spare:   newBatch(opts.CommitItems),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	j.cond = sync.NewCond(&j.mu)
	if err := j.openChecked(bopts, &file); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer, j)
	if err != nil {
		_ = j.db.Close()
		return nil, err
	}
	j.m = m
	j.log.Info("journal open", "first_epoch", wire.PosEpoch(j.first.Load()), "first_seq", wire.PosSeq(j.first.Load()),
		"epoch", wire.PosEpoch(j.last.Load()), "last_seq", wire.PosSeq(j.last.Load()),
		"backed_up_epoch", wire.PosEpoch(j.backedUp.Load()), "backed_up", wire.PosSeq(j.backedUp.Load()), "bytes", j.stats.StoredBytes, "sync", opts.SyncPolicy)
	go j.committer()
	return j, nil
}

// openChecked opens the bbolt file and validates it. bbolt can panic (or
// fault on a truncated mmap) on some corrupt files; both become errors here.
func (j *Journal) openChecked(bopts *bolt.Options, file **os.File) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if j.db != nil {
				_ = j.db.Close()
			} else if *file != nil {
				_ = (*file).Close() // releases the flock; the mapping leaks
			}
			j.db = nil
			err = fmt.Errorf("journal: %s is corrupt (bbolt failed reading it: %v)", j.path, r)
		}
	}()
	if err := precheck(j.path); err != nil {
		return err
	}
	db, err := bolt.Open(j.path, 0o600, bopts)
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return fmt.Errorf("journal: %s is locked by another process (another root running?): %w", j.path, err)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return fmt.Errorf("journal: %s is not a valid journal (corrupt or not a bbolt file): %w", j.path, err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) { // it names the path already
			return fmt.Errorf("journal: %w", err)
		}
		return fmt.Errorf("journal: open %s: %w", j.path, err)
	}
	j.db = db
	if err := j.check(); err != nil {
		_ = db.Close()
		j.db = nil
		return err
	}
	return nil
}

// check creates the buckets if missing and verifies the stored blocks: the
// file is as long as its meta page says, it is in this build's format, every
// block parses into whole items and blocks are contiguous. It loads
// FirstSeq, LastSeq, BackedUp and the stored bytes.
func (j *Journal) check() error {
	fi, err := os.Stat(j.path)
	if err != nil {
		return fmt.Errorf("journal: stat %s: %w", j.path, err)
	}
	err = j.db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("journal: %s is truncated: %d bytes, its meta page says %d", j.path, fi.Size(), tx.Size())
		}
		return nil
	})
	if err != nil {
		return err
	}
	var refused error // a complete error naming the file; any other is wrapped below
	err = j.db.Update(func(tx *bolt.Tx) error {
		items, err := tx.CreateBucketIfNotExists(itemsBucket)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyFormat); {
		case v == nil:
			// No format key: a new file, or one written before formats
			// existed (format 1, one key per item). Reading the latter as
			// blocks would misparse it; an empty one is simply adopted.
			if k, _ := items.Cursor().First(); k != nil {
				refused = fmt.Errorf("journal: %s is in the old journal format (format 1: one bbolt key per item); "+
					"this build reads only format %d (one key per block of items): move the file aside to start an empty journal",
					j.path, formatVersion)
				return refused
			}
			var f [4]byte
			binary.BigEndian.PutUint32(f[:], formatVersion)
			return meta.Put(keyFormat, f[:])
		case len(v) != 4:
			refused = fmt.Errorf("journal: %s is corrupt: format value %x is not 4 bytes", j.path, v)
			return refused
		case binary.BigEndian.Uint32(v) != formatVersion:
			refused = fmt.Errorf("journal: %s has journal format %d; this build reads only format %d",
				j.path, binary.BigEndian.Uint32(v), formatVersion)
			return refused
		}
		return nil
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("journal: init %s: %w", j.path, err)
	}
	return j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(keyBackedUp); len(v) == 8 {
			j.backedUp.Store(binary.BigEndian.Uint64(v))
		}
		c := tx.Bucket(itemsBucket).Cursor()
		var first, next uint64 // next: the seq the next block must start at
		var total int64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("journal: %s is corrupt: key %x is not 8 bytes", j.path, k)
			}
			seq := binary.BigEndian.Uint64(k)
			n, _, err := scanBlock(v)
			if err != nil {
				return fmt.Errorf("journal: %s is corrupt: block at seq %d: %w", j.path, seq, err)
			}
			end := seq + uint64(n) // one past the block's last seq
			switch {
			case seq == 0 || end < seq:
				return fmt.Errorf("journal: %s is corrupt: block at seq %d of %d items is out of range", j.path, seq, n)
			case next == 0:
				first = seq
			case seq > next && wire.PosEpoch(seq) > wire.PosEpoch(next-1):
				// A later epoch: its seqs start over (at 1, or where the
				// exchange began serving it).
			case seq > next:
				return fmt.Errorf("journal: %s has a hole: epoch %d seqs %d..%d are missing (refusing to open)", j.path, wire.PosEpoch(seq), wire.PosSeq(next), wire.PosSeq(seq-1))
			case seq < next:
				return fmt.Errorf("journal: %s is corrupt: block at seq %d overlaps the previous block, which ends at seq %d", j.path, seq, next-1)
			}
			next = end
			total += int64(len(v))
		}
		last := uint64(0)
		if next > 0 {
			last = next - 1
		}
		j.first.Store(first)
		j.last.Store(last)
		j.durable.Store(last)
		j.stats.StoredBytes = total
		return nil
	})
}

// precheck reads bbolt's two meta pages with plain reads (no mmap) and
// fails if the file is shorter than the newest valid meta page says, which
// would otherwise fault deep inside bbolt. Files it cannot judge are left to
// bbolt. The meta layout (bbolt internal/common/meta.go): magic, version,
// pageSize, flags u32; root bucket 16 B; freelist, pgid, txid u64; checksum
// u64 = FNV-64a of the 56 bytes before it; native (little) endian.
func precheck(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	const pageHeader, minFile = 16, 2 * 1024
	if fi.Size() < minFile {
		return fmt.Errorf("journal: %s is corrupt or truncated: %d bytes is too small for a bbolt file", path, fi.Size())
	}
	var pgid uint64
	var pageSize int64
	var buf [64]byte
	le := binary.LittleEndian
	for i := 0; i < 2; i++ {
		off := int64(pageHeader)
		if i == 1 {
			if pageSize == 0 {
				break
			}
			off += pageSize
		}
		if _, err := f.ReadAt(buf[:], off); err != nil {
			continue
		}
		h := fnv.New64a()
		h.Write(buf[:56])
		if le.Uint32(buf[0:]) != 0xED0CDAED || h.Sum64() != le.Uint64(buf[56:]) {
			continue
		}
		if i == 0 {
			pageSize = int64(le.Uint32(buf[8:]))
		}
		if p := le.Uint64(buf[40:]); p > pgid {
			pgid = p
		}
	}
	if pageSize > 0 && int64(pgid)*pageSize > fi.Size() {
		return fmt.Errorf("journal: %s is truncated: %d bytes, its meta page says %d", path, fi.Size(), int64(pgid)*pageSize)
	}
	return nil
}

func checkItem(v []byte) error {
	if len(v) < wire.RelayItemHeader {
		return fmt.Errorf("value of %d bytes is shorter than the item header", len(v))
	}
	if l := int(binary.LittleEndian.Uint16(v[8:])); wire.RelayItemHeader+l != len(v) {
		return fmt.Errorf("value of %d bytes holds bodyLen %d", len(v), l)
	}
	return nil
}

// nextItem splits the first item off a block value. It only reads the
// header's bodyLen; checkItem then validates the item it delimits (the
// same check an item had when it was a value of its own), so a block cut
// short inside an item is an error, never a short item.
func nextItem(block []byte) (item, rest []byte, err error) {
	l := len(block)
	if l >= wire.RelayItemHeader {
		l = min(l, wire.RelayItemHeader+int(binary.LittleEndian.Uint16(block[8:])))
	}
	if err := checkItem(block[:l]); err != nil {
		return nil, nil, err
	}
	return block[:l], block[l:], nil
}

// scanBlock validates a block value and returns its item count and the
// newest rootRecv stamp in it.
func scanBlock(v []byte) (n int, newest int64, err error) {
	if len(v) == 0 {
		return 0, 0, errors.New("empty block")
	}
	for off := 0; off < len(v); n++ {
		item, _, err := nextItem(v[off:])
		if err != nil {
			return n, 0, fmt.Errorf("item %d (offset %d): %w", n, off, err)
		}
		if r := int64(binary.LittleEndian.Uint64(item)); n == 0 || r > newest {
			newest = r
		}
		off += len(item)
	}
	return n, newest, nil
}

// Append adds one item; seq (a position: wire.Pos) must be LastSeq()+1, or
// the first of a later epoch (any seq >= 1 when the journal is empty). It copies body, so the caller may reuse it at once.
func (j *Journal) Append(seq uint64, rootRecv int64, body []byte) error {
	if len(body) > wire.MaxFeedBody {
		return fmt.Errorf("journal: append seq %d: body of %d bytes > %d", seq, len(body), wire.MaxFeedBody)
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	last := j.last.Load()
	switch {
	case seq == 0 || last != 0 && seq != last+1 && wire.PosEpoch(seq) <= wire.PosEpoch(last):
		j.mu.Unlock()
		return fmt.Errorf("journal: append seq %d out of order: last appended is %d, want %d", seq, last, last+1)
	case last != 0 && seq != last+1:
		// A new epoch: a batch's keys are consecutive, so its items wait
		// for the last epoch's to be committed (once a trading day).
		if err := j.awaitCommits(func() bool { return j.pending.n > 0 }); err != nil {
			j.mu.Unlock()
			if err == ErrClosed {
				return err
			}
			return fmt.Errorf("journal: append seq %d, the first of epoch %d: the last epoch's items wait for the disk and commits fail: %w", seq, wire.PosEpoch(seq), err)
		}
	}
	if j.pendingBytes >= j.opts.MaxPendingBytes {
		j.stats.Stalls++
		if err := j.awaitCommits(func() bool { return j.pendingBytes >= j.opts.MaxPendingBytes }); err != nil {
			j.mu.Unlock()
			if err == ErrClosed {
				return err
			}
			return fmt.Errorf("journal: append seq %d: %d bytes wait for the disk and commits fail: %w", seq, j.opts.MaxPendingBytes, err)
		}
	}
	b := j.pending
	if b.n == 0 {
		b.first = seq
	}
	n0 := len(b.data)
	b.data = wire.AppendRelayItem(b.data, rootRecv, body)
	b.ends = append(b.ends, len(b.data))
	b.n++
	size := len(b.data) - n0
	j.pendingBytes += size
	j.appendedBytes += uint64(size)
	j.stats.Appended++ // the metrics read these two under mu: no atomics per item here
	j.last.Store(seq)
	full := b.n >= j.opts.CommitItems
	j.mu.Unlock()
	if full {
		j.kickCommitter()
	}
	return nil
}

// kickCommitter wakes the committer without waiting (one wake-up is
// enough however many are asked for).
func (j *Journal) kickCommitter() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// awaitCommits waits, with mu held, while waiting() holds, keeping the
// committer on it. It returns ErrClosed if the journal closes meanwhile,
// or the commit error if commits fail.
func (j *Journal) awaitCommits(waiting func() bool) error {
	for waiting() && !j.closed {
		j.kickCommitter() // make sure the committer is on it
		if j.commitErr != nil {
			return j.commitErr
		}
		j.cond.Wait()
	}
	if j.closed {
		return ErrClosed
	}
	return nil
}

// LastSeq is the highest seq appended (0 when empty); after a restart, the
// highest one stored.
func (j *Journal) LastSeq() uint64 { return j.last.Load() }

// DurableSeq is the highest seq committed to the file.
func (j *Journal) DurableSeq() uint64 { return j.durable.Load() }

// FirstSeq is the lowest seq held (0 when empty).
func (j *Journal) FirstSeq() uint64 {
	if f := j.first.Load(); f != 0 {
		return f
	}
	// Nothing committed yet: the first pending item, if any.
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.inflight != nil && j.inflight.n > 0 {
		return j.inflight.first
	}
	if j.pending.n > 0 {
		return j.pending.first
	}
	return 0
}

// BackedUp is the highest seq known to be copied to the backup.
func (j *Journal) BackedUp() uint64 { return j.backedUp.Load() }

// SetBackedUp records (durably) that every seq <= seq is backed up.
func (j *Journal) SetBackedUp(seq uint64) error {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], seq)
	err := j.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).Put(keyBackedUp, v[:])
	})
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return fmt.Errorf("journal: set backed-up watermark %d in %s: %w", seq, j.path, err)
	}
	j.backedUp.Store(seq)
	return nil
}

// Stats returns a snapshot of the counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// Flush commits everything appended so far (control records too) and
// returns once it is in the file (fsynced under SyncAlways).
func (j *Journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	target := j.last.Load()
	for j.durable.Load() < target || j.controlPending() {
		if j.closed {
			return ErrClosed
		}
		j.kickCommitter()
		if j.commitErr != nil {
			// The committer retries on its own schedule; report the failure.
			return fmt.Errorf("journal: flush %s: %w", j.path, j.commitErr)
		}
		j.cond.Wait()
	}
	return nil
}

// Close commits what is pending, stops the committer and closes the file.
// It is idempotent.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true // Append refuses from here on; waiters wake
		j.cond.Broadcast()
		j.mu.Unlock()
		close(j.stop)
		<-j.done
		j.mu.Lock()
		if j.inflight != nil || j.pending.n > 0 {
			j.closeErr = fmt.Errorf("journal: %s closed with uncommitted items after seq %d: %v", j.path, j.durable.Load(), j.commitErr)
		}
		j.cond.Broadcast()
		j.mu.Unlock()
		if j.m != nil {
			j.m.unregister()
		}
		if err := j.db.Close(); err != nil && j.closeErr == nil {
			j.closeErr = fmt.Errorf("journal: close %s: %w", j.path, err)
		}
		j.log.Info("journal closed", "epoch", wire.PosEpoch(j.last.Load()), "last_seq", wire.PosSeq(j.last.Load()), "durable_seq", wire.PosSeq(j.durable.Load()))
	})
	return j.closeErr
}

// committer writes group commits until Close, then commits the rest.
func (j *Journal) committer() {
	defer close(j.done)
	t := time.NewTicker(j.opts.CommitEvery)
	defer t.Stop()
	for {
		stopping := false
		select {
		case <-t.C:
		case <-j.kick:
		case <-j.stop:
			stopping = true
		}
		for j.commitOnce() {
			// A full batch may have piled up while we wrote: go again.
			j.mu.Lock()
			more := j.pending.n >= j.opts.CommitItems || (stopping && (j.pending.n > 0 || len(j.pending.ctl) > 0))
			j.mu.Unlock()
			if !more {
				break
			}
		}
		if stopping {
			// One retry of a failed batch at close.
			j.commitOnce()
			return
		}
		j.maybeRetain()
	}
}

// commitOnce writes the in-flight batch (a failed one is retried first) or
// takes the pending one. It reports whether a commit succeeded.
func (j *Journal) commitOnce() bool {
	j.mu.Lock()
	if j.inflight == nil {
		if j.pending.n == 0 && len(j.pending.ctl) == 0 {
			j.mu.Unlock()
			return false
		}
		j.inflight = j.pending
		j.pending = j.spare
		j.spare = nil
	}
	b := j.inflight
	j.mu.Unlock()

	start := time.Now()
	txs, err := j.write(b)
	elapsed := time.Since(start)

	j.mu.Lock()
	defer j.mu.Unlock()
	j.stats.Commits += uint64(txs)
	if j.m != nil {
		j.m.commits.Add(float64(txs))
	}
	if err != nil {
		j.stats.CommitErrors++
		if j.commitErr == nil {
			j.log.Error("journal commit failed; retrying", "epoch", wire.PosEpoch(b.first), "first_seq", wire.PosSeq(b.first), "items", b.n, "err", err)
		}
		j.commitErr = err
		if j.m != nil {
			j.m.commitErrors.Inc()
		}
		j.cond.Broadcast()
		return false
	}
	if j.commitErr != nil {
		j.log.Info("journal commits recovered", "epoch", wire.PosEpoch(b.first), "durable_seq", wire.PosSeq(b.first+uint64(b.n)-1))
	}
	j.commitErr = nil
	j.stats.StoredBytes += int64(len(b.data))
	j.pendingBytes -= len(b.data)
	j.inflight = nil
	b.reset()
	j.spare = b
	j.cond.Broadcast()
	if j.m != nil {
		j.m.commitSeconds.Observe(elapsed.Seconds() / float64(max(txs, 1)))
	}
	return true
}

// maxTxItems bounds one bbolt transaction: bbolt grows a single in-memory
// leaf node by every Put until commit, so a huge transaction (a backlog after
// a slow disk) costs far more per item than several moderate ones.
var maxTxItems = 8192

// write puts one batch in as few transactions as maxTxItems allows
// (normally one), as blocks of consecutive items: one Put per block, its
// value a slice of b.data (the items are already back to back), so the
// per-item cost is a length check. Blocks never span transactions: a commit
// of few items makes a small block. bbolt keeps the key and value slices
// until commit, so a transaction's keys are built in full before its first
// Put, and b.data is not touched until the batch is reset. durable
// advances per transaction.
func (j *Journal) write(b *batch) (txs int, err error) {
	for lo := b.done; lo < b.n; lo = b.done {
		hi := min(lo+maxTxItems, b.n)
		b.keys, b.bends = b.keys[:0], b.bends[:0]
		for i := lo; i < hi; {
			e := b.blockEnd(i, hi)
			b.keys = binary.BigEndian.AppendUint64(b.keys, b.first+uint64(i))
			b.bends = append(b.bends, e)
			i = e
		}
		err := j.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(itemsBucket)
			bk.FillPercent = 1.0
			i := lo
			for k, e := range b.bends {
				if err := bk.Put(b.keys[k*8:k*8+8], b.data[b.start(i):b.ends[e-1]]); err != nil {
					return err
				}
				i = e
			}
			return nil
		})
		if err != nil {
			return txs, err
		}
		txs++
		b.done = hi
		if j.first.Load() == 0 {
			j.first.Store(b.first)
		}
		j.durable.Store(b.first + uint64(hi) - 1)
	}
	if len(b.ctl) > 0 {
		if err := j.writeControl(b, j.durable.Load()); err != nil {
			return txs, err
		}
		txs++
	}
	return txs, nil
}

// Range calls fn for each item with seq >= from in order until fn returns
// false: first the committed items, then those still pending. item is the
// relay item encoding and is valid only during fn.
func (j *Journal) Range(from uint64, fn func(seq uint64, item []byte) bool) error {
	if from == 0 {
		from = 1
	}
	next := from
	var scratch *batch
	for {
		// Committed items, a bounded read transaction at a time.
		for {
			durable := j.durable.Load()
			if next > durable {
				break
			}
			n, stop, err := j.rangeDB(next, durable, fn)
			if err != nil {
				return err
			}
			if stop {
				return nil
			}
			if n == 0 {
				// Retention deleted everything from next on up to the durable seq.
				next = durable + 1
				break
			}
			next += uint64(n)
			if j.first.Load() > next {
				next = j.first.Load()
			}
		}
		// Items in memory: copy them out under the lock.
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return ErrClosed
		}
		if next > j.last.Load() {
			j.mu.Unlock()
			return nil
		}
		if next <= j.durable.Load() {
			// Committed while we were reading: back to bbolt.
			j.mu.Unlock()
			continue
		}
		if scratch == nil {
			scratch = &batch{}
		}
		scratch.reset()
		for _, b := range [2]*batch{j.inflight, j.pending} {
			if b == nil {
				continue
			}
			for i := 0; i < b.n; i++ {
				seq := b.first + uint64(i)
				if seq < next {
					continue
				}
				if scratch.n == 0 {
					scratch.first = seq
				}
				scratch.data = append(scratch.data, b.item(i)...)
				scratch.ends = append(scratch.ends, len(scratch.data))
				scratch.n++
			}
		}
		j.mu.Unlock()
		for i := 0; i < scratch.n; i++ {
			if !fn(scratch.first+uint64(i), scratch.item(i)) {
				return nil
			}
		}
		return nil
	}
}

// rangeDB reads at most rangeTxItems committed items from next (<= upTo).
// n is how far next advances: up to and including the last seq handed to fn.
func (j *Journal) rangeDB(next, upTo uint64, fn func(uint64, []byte) bool) (n int, stop bool, err error) {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], next)
	err = j.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(itemsBucket).Cursor()
		// The block holding next is the last one whose first seq is <= next:
		// Seek finds the first key >= next, so step back unless it is next.
		k, v := c.Seek(key[:])
		switch {
		case k == nil:
			k, v = c.Last()
		case binary.BigEndian.Uint64(k) > next:
			if pk, pv := c.Prev(); pk != nil {
				k, v = pk, pv
			} else { // next is older than every block (retention): from the first
				k, v = c.First()
			}
		}
		for ; k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			for rest := v; len(rest) > 0; seq++ {
				var item []byte
				var err error
				if item, rest, err = nextItem(rest); err != nil {
					return fmt.Errorf("block at seq %d: %w", binary.BigEndian.Uint64(k), err)
				}
				if seq < next {
					continue // before from, in the block holding it
				}
				if seq > upTo {
					return nil
				}
				n = int(seq-next) + 1
				if !fn(seq, item) {
					stop = true
					return nil
				}
				if n >= rangeTxItems {
					return nil
				}
			}
		}
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return n, false, ErrClosed
	}
	if err != nil {
		return n, false, fmt.Errorf("journal: read %s from seq %d: %w", j.path, next, err)
	}
	return n, stop, nil
}

// maybeRetain runs retention at most once per RetainEvery.
func (j *Journal) maybeRetain() {
	if j.opts.RetainAge == 0 && j.opts.RetainBytes == 0 && j.opts.RetainEpochs == 0 {
		return
	}
	if time.Since(j.lastRetain) < j.opts.RetainEvery {
		return
	}
	j.lastRetain = time.Now()
	if _, err := j.Retain(); err != nil {
		j.log.Error("journal retention failed", "err", err)
	}
}

// oldestKeptEpoch is the oldest epoch RetainEpochs keeps (0: all): the
// file's epochs are found by seeking past each in turn.
func (j *Journal) oldestKeptEpoch(c *bolt.Cursor) uint32 {
	if j.opts.RetainEpochs == 0 {
		return 0
	}
	var epochs []uint32
	var key [8]byte
	for k, _ := c.First(); k != nil; {
		e := wire.PosEpoch(binary.BigEndian.Uint64(k))
		epochs = append(epochs, e)
		if e == 1<<32-1 {
			break
		}
		binary.BigEndian.PutUint64(key[:], wire.Pos(e+1, 0))
		k, _ = c.Seek(key[:])
	}
	if len(epochs) <= j.opts.RetainEpochs {
		return 0
	}
	return epochs[len(epochs)-j.opts.RetainEpochs]
}

// firstKey is the first key at or after pos (pos itself when the file ends
// before it).
func (j *Journal) firstKey(pos uint64) uint64 {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], pos)
	_ = j.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(itemsBucket).Cursor().Seek(key[:]); k != nil {
			pos = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return pos
}

// maxDeletePerTx bounds one retention transaction, in blocks (a variable
// for tests).
var maxDeletePerTx = 1000

// Retain deletes the oldest blocks that RetainAge, RetainBytes and
// RetainEpochs no longer keep. Blocks go whole or not at all: a block is
// deleted only when every item in it is older than RetainAge, the file is
// over RetainBytes, or RetainEpochs newer epochs follow its own; never
// the block holding the newest item (LastSeq survives a restart) and, with
// RequireBackup, only when its last seq is <= BackedUp(). It runs on its
// own after commits; it is exported for tests and tools. It returns the
// number of items deleted.
func (j *Journal) Retain() (int, error) {
	j.retainMu.Lock()
	defer j.retainMu.Unlock()
	deleted := 0
	for {
		n, more, err := j.retainTx()
		deleted += n
		if err != nil || !more {
			return deleted, err
		}
	}
}

// retainTx deletes up to maxDeletePerTx blocks in one transaction; more
// reports that it stopped at that bound rather than at a block to keep.
func (j *Journal) retainTx() (n int, more bool, err error) {
	durable := j.durable.Load()
	first := j.first.Load()
	if first == 0 || first > durable {
		return 0, false, nil
	}
	backedUp := j.backedUp.Load()
	j.mu.Lock()
	stored := j.stats.StoredBytes
	j.mu.Unlock()
	cutoff := int64(0)
	if j.opts.RetainAge > 0 {
		cutoff = j.opts.Now() - int64(j.opts.RetainAge)
	}
	var freed int64
	next := first // first seq of the block under consideration
	err = j.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(itemsBucket)
		c := bk.Cursor()
		keepEpoch := j.oldestKeptEpoch(c)
		var key [8]byte
		for blocks := 0; ; blocks++ {
			if blocks == maxDeletePerTx {
				more = true
				return nil
			}
			binary.BigEndian.PutUint64(key[:], next)
			k, v := c.Seek(key[:]) // next, or a later epoch's first block
			if k == nil {
				return fmt.Errorf("block at seq %d missing while retaining", next)
			}
			next = binary.BigEndian.Uint64(k)
			items, newest, err := scanBlock(v)
			if err != nil {
				return fmt.Errorf("block at seq %d: %w", next, err)
			}
			last := next + uint64(items) - 1
			if last >= durable || (j.opts.RequireBackup && last > backedUp) {
				return nil
			}
			old := j.opts.RetainAge > 0 && newest < cutoff
			big := j.opts.RetainBytes > 0 && stored-freed > j.opts.RetainBytes
			if !old && !big && wire.PosEpoch(next) >= keepEpoch {
				return nil
			}
			size := int64(len(v)) // v is not valid after the Delete
			if err := bk.Delete(k); err != nil {
				return err
			}
			freed += size
			n += items
			next = last + 1
		}
	})
	if err != nil {
		return 0, false, fmt.Errorf("journal: retention in %s: %w", j.path, err)
	}
	if n == 0 {
		return 0, false, nil
	}
	if next > j.last.Load() { // cannot be: the newest block stays
		return 0, false, fmt.Errorf("journal: retention in %s deleted up to seq %d, past the last", j.path, next)
	}
	j.first.Store(j.firstKey(next))
	j.mu.Lock()
	j.stats.StoredBytes -= freed
	j.stats.Deleted += uint64(n)
	j.mu.Unlock()
	if j.m != nil {
		j.m.deleted.Add(float64(n))
	}
	return n, more, nil
}
