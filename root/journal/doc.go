// Package journal is the root's durable history: a bbolt file holding every
// feed item by exchange seq, written in group commits. It implements
// root.Store and the backup.Source the Postgres backup reads.
//
// # File layout (bbolt buckets), format 2
//
//	"items"  key: first seq of the block, u64 big-endian (8 B)
//	         value: a block: the items of seqs key, key+1, ..., key+n-1 back
//	         to back, each in relay item encoding (wire.AppendRelayItem),
//	         little-endian; n is found by walking the bodyLen fields
//	         +--------------+-------------+-----------+--------------+-----
//	         | rootRecv i64 | bodyLen u16 | feed body | rootRecv i64 | ...
//	         +--------------+-------------+-----------+--------------+-----
//	         |<-------------- item key -------------->|<-- item key+1 ...
//	"meta"   "format"    -> u32 big-endian: 2 (this layout)
//	         "backed_up" -> u64 big-endian: highest seq copied to Postgres
//
// One bbolt key per block rather than per item: bbolt's cost is per key (a
// node.put with its search, an element header, allocations), so a block of
// hundreds of items makes it negligible per item. A block holds at most 256
// items and at most 64 KiB (an item larger than that is a block of its
// own); a commit of fewer items writes a smaller block, so block sizes vary
// and a block never spans two transactions. Keys are positions (wire.Pos:
// the epoch in the high 32 bits, the seq in the low), so the epochs of a
// trading day never overwrite or shadow one another; a journal written
// before epochs holds epoch 0, read as it was. Within an epoch blocks are
// contiguous: the next block's key is this key + n, so the file holds every
// seq of an epoch from its first to its last. A later epoch starts at its
// own first seq. Open checks that (and that every block parses into whole,
// well-formed items) and refuses a file with a hole, naming the missing
// seq range. A block never spans two epochs.
//
// Format 1, before blocks, had one key per item and no "format" key. Open
// refuses such a file (one with items) with an error saying its format is
// old; an empty one is adopted as format 2. An older (format 1) build
// refuses a format 2 file too, at its first block of two or more items,
// which fails its per-item value check.
//
// # Writes: group commit
//
// Append copies the item into an in-memory pending batch (buffers are reused,
// so steady state allocates nothing) and returns. One committer goroutine
// swaps the pending batch out and writes it in a single bbolt read-write
// transaction when CommitEvery has elapsed or CommitItems items are pending,
// whichever comes first: never one transaction per item (a backlog larger
// than 8192 items is split into transactions of that size, which bbolt
// handles far faster than one huge one). Each transaction writes its items
// as blocks, one Put each, in ascending key order with the bucket's
// FillPercent at 1.0, so pages are packed full. Append accepts only seq ==
// LastSeq()+1 (any seq >= 1 when the journal is empty). When more than
// MaxPendingBytes wait for the disk, Append blocks until a commit frees room
// (bounded memory; counted in Stats.Stalls), and fails once commits are
// failing too.
//
// SyncPolicy "always" (the default) fsyncs every commit: a commit that
// returned survives a power cut, and DurableSeq reports the last such seq.
// "none" sets bbolt's NoSync: commits reach the OS page cache only, which
// survives a crash of the process but not of the machine.
//
// # Reads
//
// Range first reads committed items from bbolt: it seeks to the block
// holding from (the last key <= from), skips the items before from inside
// it, and goes on block by block, in read transactions of at most
// rangeTxItems items (long read transactions would block the committer
// when bbolt remaps the file), then the items still pending in memory, so it
// sees everything appended before it was called. Items are copied out of the
// pending batch under the lock and handed to fn outside it.
//
// # Retention
//
// After commits (at most once per RetainEvery) the committer deletes the
// oldest blocks, whole, while every item of the oldest block is older than
// RetainAge (by its rootRecv stamp against the injected clock) or the items
// total more than RetainBytes. FirstSeq then is the next block's key. It
// never deletes the block holding the newest item (LastSeq survives a
// restart), and with RequireBackup never a block whose last seq is above
// BackedUp(). So retention keeps up to a block (<= 256 items) more than the
// limits alone would.
//
// # Concurrency
//
// Append, Flush, Range, LastSeq, DurableSeq, FirstSeq, BackedUp and
// SetBackedUp are safe from any goroutine. One mutex (Journal.mu) guards the
// batches and counters; no other lock is held with it, and fn passed to Range
// is never called with it held.
package journal
