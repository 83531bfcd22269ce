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
// the state (meta "control_snapshot": how many leading records are one).
var (
	controlBucket      = []byte("control")
	keyControlThrough  = []byte("control_through")
	keyControlSnapshot = []byte("control_snapshot")
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
		select {
		case j.kick <- struct{}{}:
		default:
		}
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
			k, err := bk.NextSequence()
			if err != nil {
				return err
			}
			var key [8]byte
			binary.BigEndian.PutUint64(key[:], k)
			if err := bk.Put(key[:], rec); err != nil {
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
		snap := uint64(0)
		if v := meta.Get(keyControlSnapshot); len(v) == 8 {
			snap = binary.BigEndian.Uint64(v)
		}
		bk := tx.Bucket(controlBucket)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			n++
			if err := fn(v, uint64(n) <= snap); err != nil {
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
		if tx.Bucket(controlBucket) != nil {
			if err := tx.DeleteBucket(controlBucket); err != nil {
				return err
			}
		}
		bk, err := tx.CreateBucket(controlBucket)
		if err != nil {
			return err
		}
		for _, rec := range snapshot {
			k, _ := bk.NextSequence()
			var key [8]byte
			binary.BigEndian.PutUint64(key[:], k)
			if err := bk.Put(key[:], rec); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(len(snapshot)))
		meta := tx.Bucket(metaBucket)
		if err := meta.Put(keyControlSnapshot, v[:]); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(v[:], through)
		return meta.Put(keyControlThrough, v[:])
	})
}
