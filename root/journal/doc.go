// Package journal is the root's durable history: a bbolt file holding every
// feed item by exchange seq, written in group commits. It implements
// root.Store and the backup.Source the Postgres backup reads.
//
// # File layout (bbolt buckets)
//
//	"items"  key: seq u64 big-endian (8 B)
//	         value: relay item encoding (wire.AppendRelayItem), little-endian
//	         +--------------+-------------+------------------+
//	         | rootRecv i64 | bodyLen u16 | feed body        |
//	         +--------------+-------------+------------------+
//	"meta"   "backed_up" -> u64 big-endian: highest seq copied to Postgres
//
// Stored seqs are contiguous: the file always holds exactly [FirstSeq,
// LastSeq]. Open checks that (and that every value is well formed) and refuses
// a file with a hole, naming the missing seq range.
//
// # Writes: group commit
//
// Append copies the item into an in-memory pending batch (buffers are reused,
// so steady state allocates nothing) and returns. One committer goroutine
// swaps the pending batch out and writes it in a single bbolt read-write
// transaction when CommitEvery has elapsed or CommitItems items are pending,
// whichever comes first: never one transaction per item (a backlog larger
// than 8192 items is split into transactions of that size, which bbolt
// handles far faster than one huge one). Keys are written in
// ascending order with the bucket's FillPercent at 1.0, so pages are packed
// full. Append accepts only seq == LastSeq()+1 (any seq >= 1 when the journal
// is empty). When more than MaxPendingBytes wait for the disk, Append blocks
// until a commit frees room (bounded memory; counted in Stats.Stalls), and
// fails once commits are failing too.
//
// SyncPolicy "always" (the default) fsyncs every commit: a commit that
// returned survives a power cut, and DurableSeq reports the last such seq.
// "none" sets bbolt's NoSync: commits reach the OS page cache only, which
// survives a crash of the process but not of the machine.
//
// # Reads
//
// Range first reads committed items from bbolt, in read transactions of at
// most rangeTxItems items (long read transactions would block the committer
// when bbolt remaps the file), then the items still pending in memory, so it
// sees everything appended before it was called. Items are copied out of the
// pending batch under the lock and handed to fn outside it.
//
// # Retention
//
// After commits (at most once per RetainEvery) the committer deletes the
// oldest items while the oldest is older than RetainAge (by its rootRecv
// stamp against the injected clock) or the items total more than RetainBytes.
// It always keeps the newest item (LastSeq survives a restart), and with
// RequireBackup it never deletes an item above BackedUp().
//
// # Concurrency
//
// Append, Flush, Range, LastSeq, DurableSeq, FirstSeq, BackedUp and
// SetBackedUp are safe from any goroutine. One mutex (Journal.mu) guards the
// batches and counters; no other lock is held with it, and fn passed to Range
// is never called with it held.
package journal
