package journal

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Control records (the alert engine's records, package control) are journaled
// with the feed: AppendControl queues one behind the items appended so
// far, and each group commit writes its records (bucket "control", keys
// counting up) in a transaction after its items, with meta
// "control_through": the last item whose records are all in. After a
// crash the items past it are matched again (the engine is deterministic),
// so a fire is never lost; the ALERT and UNALERT ops of the last commit
// window can be. CompactControl replaces the records with a snapshot of
// the state (meta "control_snapshot": the key of its last record); keys
// keep counting up across compactions, so the Postgres backup (meta
// "control_backed_up": the last key it holds) never takes a new record
// for one it has.
var (
	controlBucket      = []byte("control")
	keyControlThrough  = []byte("control_through")
	keyControlSnapshot = []byte("control_snapshot")
	keyControlBackedUp = []byte("control_backed_up")
)

// AppendControl queues a control record behind the items appended so
// far. It copies rec.
func (j *Journal) AppendControl(rec []byte) error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	b := j.pending
	b.ctl = append(b.ctl, append([]byte(nil), rec...))
	full := len(b.ctl) >= j.opts.CommitItems
	j.mu.Unlock()
	if full {
		j.kickCommitter()
	}
	return nil
}

// writeControl writes b's control records in one transaction, with
// control_through at through.
func (j *Journal) writeControl(b *batch, through uint64) error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(controlBucket)
		if err != nil {
			return err
		}
		bk.FillPercent = 1.0
		for _, rec := range b.ctl {
			if _, err := putControl(bk, rec); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], through)
		return tx.Bucket(metaBucket).Put(keyControlThrough, v[:])
	})
	if err == nil {
		b.ctl = b.ctl[:0]
	}
	return err
}

// LoadControl calls fn with every stored control record in order
// (snapshot: it is one of a compaction's snapshot records) and returns
// control_through and how many records there were.
func (j *Journal) LoadControl(fn func(rec []byte, snapshot bool) error) (through uint64, n int, err error) {
	err = j.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if v := meta.Get(keyControlThrough); len(v) == 8 {
			through = binary.BigEndian.Uint64(v)
		}
		snap := metaU64(meta, keyControlSnapshot)
		bk := tx.Bucket(controlBucket)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			n++
			if err := fn(v, binary.BigEndian.Uint64(k) <= snap); err != nil {
				return fmt.Errorf("journal: %s: control record %x: %w", j.path, k, err)
			}
			return nil
		})
	})
	return through, n, err
}

// CompactControl replaces every stored control record with snapshot (the
// state as of through). Call it before any AppendControl.
func (j *Journal) CompactControl(snapshot [][]byte, through uint64) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		seq := uint64(0)
		if old := tx.Bucket(controlBucket); old != nil {
			seq = old.Sequence()
			if err := tx.DeleteBucket(controlBucket); err != nil {
				return err
			}
		}
		bk, err := tx.CreateBucket(controlBucket)
		if err != nil {
			return err
		}
		if err := bk.SetSequence(seq); err != nil {
			return err
		}
		var k uint64
		for _, rec := range snapshot {
			if k, err = putControl(bk, rec); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], k)
		meta := tx.Bucket(metaBucket)
		if err := meta.Put(keyControlSnapshot, v[:]); err != nil {
			return err
		}
		var th [8]byte // bbolt keeps v until the commit: another array
		binary.BigEndian.PutUint64(th[:], through)
		return meta.Put(keyControlThrough, th[:])
	})
}

func metaU64(meta *bolt.Bucket, key []byte) uint64 {
	if v := meta.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// RangeControl calls fn with each committed control record whose key is
// after after, in order, until fn returns false (snapshot: one of a
// compaction's snapshot records). rec is valid only during fn.
func (j *Journal) RangeControl(after uint64, fn func(key uint64, rec []byte, snapshot bool) bool) error {
	return j.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(controlBucket)
		if bk == nil {
			return nil
		}
		snap := metaU64(tx.Bucket(metaBucket), keyControlSnapshot)
		var from [8]byte
		binary.BigEndian.PutUint64(from[:], after+1)
		c := bk.Cursor()
		for k, v := c.Seek(from[:]); k != nil; k, v = c.Next() {
			key := binary.BigEndian.Uint64(k)
			if !fn(key, v, key <= snap) {
				return nil
			}
		}
		return nil
	})
}

// ControlBackedUp is the key of the last control record the backup holds.
func (j *Journal) ControlBackedUp() uint64 {
	var k uint64
	_ = j.db.View(func(tx *bolt.Tx) error { k = metaU64(tx.Bucket(metaBucket), keyControlBackedUp); return nil })
	return k
}

// SetControlBackedUp records that the backup holds the control records up
// to key.
func (j *Journal) SetControlBackedUp(key uint64) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], key)
		return tx.Bucket(metaBucket).Put(keyControlBackedUp, v[:])
	})
}

// controlPending reports (with mu held) whether control records wait for
// a commit.
func (j *Journal) controlPending() bool {
	return len(j.pending.ctl) > 0 || j.inflight != nil && len(j.inflight.ctl) > 0
}

// putControl stores rec under the bucket's next key and returns the key.
func putControl(bk *bolt.Bucket, rec []byte) (uint64, error) {
	k, err := bk.NextSequence()
	if err != nil {
		return 0, err
	}
	key := binary.BigEndian.AppendUint64(nil, k) // bbolt keeps it until the commit
	return k, bk.Put(key, rec)
}
