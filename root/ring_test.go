package root

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"sync"
	"testing"

	"tickrelay/wire"
)

// testBody returns a valid feed body for seq whose size varies with seq
// (an aggregate book update with seq%6 entries) and which carries seq.
func testBody(seq uint64) []byte {
	return appendTestFrame(nil, seq)[wire.FeedLenSize:]
}

// appendTestFrame appends the complete feed frame of testBody(seq).
func appendTestFrame(dst []byte, seq uint64) []byte {
	var f [8 + wire.MaxBookEntries*24]byte
	n := int(seq % 6)
	binary.LittleEndian.PutUint32(f[0:], uint32(seq%1000)) // security code
	f[7] = byte(n)
	for i := 0; i < n; i++ {
		e := f[8+i*24:]
		binary.LittleEndian.PutUint64(e, seq*10+uint64(i)) // agg qty
		binary.LittleEndian.PutUint32(e[8:], uint32(1000+i))
	}
	return wire.AppendFeedFrame(dst, seq, int64(seq)*1000, wire.TypeAggregateBook, f[:8+n*24])
}

func mustRing(t testing.TB, size int) *Ring {
	t.Helper()
	r, err := NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRingSizeMustBePowerOfTwo(t *testing.T) {
	for _, n := range []int{0, 1, 3, 6, 100} {
		if _, err := NewRing(n); err == nil {
			t.Errorf("NewRing(%d) accepted", n)
		}
	}
}

func TestRingEmpty(t *testing.T) {
	r := mustRing(t, 8)
	if f, h := r.Bounds(); f != 1 || h != 0 {
		t.Fatalf("empty bounds = %d,%d want 1,0", f, h)
	}
	if _, ok := r.Get(nil, 1); ok {
		t.Fatal("Get on empty ring succeeded")
	}
	b, n, err := r.AppendBatch(nil, 1, 1<<16, 5)
	if err != nil || n != 0 || len(b) != 0 {
		t.Fatalf("AppendBatch on empty = %d bytes, %d, %v", len(b), n, err)
	}
}

// TestRingModel appends past several wraps and checks every lookup against
// a naive map model.
func TestRingModel(t *testing.T) {
	const size = 16
	r := mustRing(t, size)
	model := map[uint64][]byte{}
	start := uint64(5) // the first item ever may start anywhere
	for seq := start; seq < start+100; seq++ {
		body := testBody(seq)
		if err := r.Append(seq, int64(seq)+7, body); err != nil {
			t.Fatal(err)
		}
		model[seq] = wire.AppendRelayItem(nil, int64(seq)+7, body)
		first, head := r.Bounds()
		wantFirst := start
		if seq-start+1 > size {
			wantFirst = seq - size + 1
		}
		if head != seq || first != wantFirst {
			t.Fatalf("after %d: bounds %d,%d want %d,%d", seq, first, head, wantFirst, seq)
		}
		for q := start - 1; q <= seq+1; q++ {
			got, ok := r.Get(nil, q)
			if want := q >= first && q <= head; ok != want {
				t.Fatalf("Get(%d) ok=%v want %v (bounds %d,%d)", q, ok, want, first, head)
			}
			if ok && !bytes.Equal(got, model[q]) {
				t.Fatalf("Get(%d) = %x want %x", q, got, model[q])
			}
		}
	}
}

func TestRingAppendOrder(t *testing.T) {
	r := mustRing(t, 4)
	if err := r.Append(0, 0, testBody(1)); err == nil {
		t.Error("seq 0 accepted")
	}
	if err := r.Append(1, 0, testBody(1)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 3} {
		if err := r.Append(seq, 0, testBody(seq)); err == nil {
			t.Errorf("seq %d after 1 accepted", seq)
		}
	}
	if err := r.Append(2, 0, make([]byte, wire.MaxFeedBody+1)); err == nil {
		t.Error("oversized body accepted")
	}
	if err := r.AppendItem(2, []byte{1, 2, 3}); err == nil {
		t.Error("malformed item accepted")
	}
	if err := r.AppendItem(2, wire.AppendRelayItem(nil, 9, testBody(2))); err != nil {
		t.Fatal(err)
	}
	r.Reset(100)
	if f, h := r.Bounds(); f != 100 || h != 99 {
		t.Fatalf("after Reset(100) bounds %d,%d", f, h)
	}
	if err := r.Append(101, 0, testBody(101)); err == nil {
		t.Error("seq 101 after Reset(100) accepted")
	}
	if err := r.Append(100, 0, testBody(100)); err != nil {
		t.Fatal(err)
	}
}

// TestRingAppendBatch checks batches decode to consecutive seqs, respect the
// byte bound and stamp rootSend >= every rootRecv.
func TestRingAppendBatch(t *testing.T) {
	r := mustRing(t, 64)
	for seq := uint64(1); seq <= 100; seq++ {
		if err := r.Append(seq, int64(seq*100), testBody(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.AppendBatch(nil, 36, 4096, 0); !errors.Is(err, ErrGone) {
		t.Fatalf("from 36 (first 37): err %v want ErrGone", err)
	}
	var br wire.BatchReader
	next := uint64(37)
	for next <= 100 {
		b, n, err := r.AppendBatch(nil, next, 600, 5000) // rootSend older than items 51..
		if err != nil || n == 0 {
			t.Fatalf("AppendBatch(%d): n=%d err=%v", next, n, err)
		}
		typ, p, used, err := wire.NextRelayFrame(b)
		if err != nil || typ != wire.RelayBatch || used != len(b) {
			t.Fatalf("batch frame: %q %v used %d of %d", typ, err, used, len(b))
		}
		if len(p)-12 > 600 && n > 1 {
			t.Fatalf("batch of %d items holds %d bytes > 600", n, len(p)-12)
		}
		br.Reset(p)
		for br.Next() {
			if br.Item.Seq != next || !bytes.Equal(br.Item.Body, testBody(next)) || br.Item.RootRecv != int64(next*100) {
				t.Fatalf("item seq %d, want %d", br.Item.Seq, next)
			}
			next++
		}
		if err := br.Err(); err != nil {
			t.Fatal(err)
		}
		if br.Count != n {
			t.Fatalf("count %d want %d", br.Count, n)
		}
	}
	if b, n, _ := r.AppendBatch(nil, 101, 600, 0); n != 0 || len(b) != 0 {
		t.Fatal("batch beyond head not empty")
	}
}

// TestRingConcurrentReaders runs one writer against readers that check every
// slot they read is whole (run with -race).
func TestRingConcurrentReaders(t *testing.T) {
	r := mustRing(t, 32)
	const total = 20000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 4)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			var br wire.BatchReader
			for {
				select {
				case <-stop:
					return
				default:
				}
				first, head := r.Bounds()
				if head == 0 {
					continue
				}
				seq := first + (head-first)/2
				item, ok := r.Get(buf[:0], seq)
				buf = item
				if ok {
					if int64(binary.LittleEndian.Uint64(item)) != int64(seq) || !bytes.Equal(item[wire.RelayItemHeader:], testBody(seq)) {
						errc <- errors.New("torn slot from Get")
						return
					}
				}
				b, n, err := r.AppendBatch(nil, seq, 2048, 1<<62)
				if err != nil || n == 0 {
					continue // lapped meanwhile: fine
				}
				_, p, _, _ := wire.NextRelayFrame(b)
				br.Reset(p)
				want := seq
				for br.Next() {
					if br.Item.Seq != want || !bytes.Equal(br.Item.Body, testBody(want)) {
						errc <- errors.New("torn slot in batch")
						return
					}
					want++
				}
				if br.Err() != nil {
					errc <- br.Err()
					return
				}
			}
		}()
	}
	for seq := uint64(1); seq <= total; seq++ {
		if err := r.Append(seq, int64(seq), testBody(seq)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// TestRingFirstLapAllocations: filling a fresh ring cuts slot room from
// shared slabs, not one allocation per item.
func TestRingFirstLapAllocations(t *testing.T) {
	body := make([]byte, 90)
	const n = 1 << 14
	allocs := testing.AllocsPerRun(3, func() {
		r, _ := NewRing(n)
		for seq := uint64(1); seq <= n; seq++ {
			if err := r.Append(seq, 1, body); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The slots array, the ring and one 1 MiB slab per ~10k items of 100 B.
	if allocs > 8 {
		t.Fatalf("filling a %d-slot ring took %.0f allocations", n, allocs)
	}
}

// TestRingSlotGrowth: a slot that meets ever larger items keeps each one
// whole, and the room it leaves behind stays under twice the largest room
// below the cap (room at least doubles), so 3 x size x MaxRelayItem bounds
// the slabs.
func TestRingSlotGrowth(t *testing.T) {
	r, _ := NewRing(2)
	seq := uint64(1)
	for n := 1; n <= wire.MaxFeedBody; n += 37 {
		for range 2 { // both slots
			body := bytes.Repeat([]byte{byte(n)}, n)
			if err := r.Append(seq, int64(seq), body); err != nil {
				t.Fatal(err)
			}
			got, ok := r.Get(nil, seq)
			if want := wire.AppendRelayItem(nil, int64(seq), body); !ok || !bytes.Equal(got, want) {
				t.Fatalf("seq %d (%d B): got %d B, want %d", seq, n, len(got), len(want))
			}
			seq++
		}
	}
	if cut := (len(r.slabs)-1)*slabBytes + r.cut; cut > 3*2*wire.MaxRelayItem {
		t.Fatalf("2 slots cut %d bytes of room: over 3 x size x MaxRelayItem = %d", cut, 3*2*wire.MaxRelayItem)
	}
}

// TestRingSlotsHoldNoPointers: the slot table (a million entries in the
// daemon) is not scanned by the GC only while a slot holds no pointers.
func TestRingSlotsHoldNoPointers(t *testing.T) {
	typ := reflect.TypeOf(slot{})
	for i := range typ.NumField() {
		switch typ.Field(i).Type.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Int32, reflect.Int64:
		default:
			t.Fatalf("slot field %s is a %s: the GC would scan the slot table", typ.Field(i).Name, typ.Field(i).Type)
		}
	}
}

// TestRingEpochs: a new epoch starts where the last one's items stay: a
// reader gets the rest of the last epoch, ErrEpochEnd at its end, and the
// new one from NextEpoch; once lapped, the old epoch is gone.
func TestRingEpochs(t *testing.T) {
	r, _ := NewRing(16)
	for s := uint64(1); s <= 10; s++ {
		if err := r.Append(s, 1, testBody(s)); err != nil {
			t.Fatal(err)
		}
	}
	r.Begin(wire.Pos(5, 1))
	if !r.EpochEmpty() || r.Head() != wire.Pos(5, 0) || r.First() != 1 {
		t.Fatalf("begun: empty %v head %x first %x", r.EpochEmpty(), r.Head(), r.First())
	}
	if err := r.Append(11, 1, testBody(11)); err == nil {
		t.Fatal("the last epoch appended to after a new one began")
	}
	for s := uint64(1); s <= 5; s++ {
		if err := r.Append(wire.Pos(5, s), 1, testBody(s)); err != nil {
			t.Fatal(err)
		}
	}
	batch := func(from uint64) (seqs []uint64, err error) {
		b, n, err := r.AppendBatch(nil, from, 1<<20, 9)
		if err != nil || n == 0 {
			return nil, err
		}
		_, p, _, _ := wire.NextRelayFrame(b)
		var br wire.BatchReader
		for br.Reset(p); br.Next(); {
			seqs = append(seqs, wire.Pos(br.Epoch, br.Item.Seq))
		}
		return seqs, br.Err()
	}
	if got, err := batch(3); err != nil || len(got) != 8 || got[0] != 3 || got[7] != 10 {
		t.Fatalf("rest of epoch 0: %v %v", got, err)
	}
	if _, err := batch(11); !errors.Is(err, ErrEpochEnd) {
		t.Fatalf("at epoch 0's end: %v", err)
	}
	if next, ok := r.NextEpoch(11); !ok || next != wire.Pos(5, 1) {
		t.Fatalf("next epoch %x %v", next, ok)
	}
	if got, err := batch(wire.Pos(5, 2)); err != nil || len(got) != 4 || got[3] != wire.Pos(5, 5) {
		t.Fatalf("epoch 5: %x %v", got, err)
	}
	if _, ok := r.Get(nil, 4); !ok || !r.HoldsEpoch(0) || r.HoldsEpoch(3) {
		t.Fatal("epoch 0 not held")
	}
	if _, err := batch(wire.Pos(3, 1)); !errors.Is(err, ErrGone) {
		t.Fatalf("an epoch never held: %v", err)
	}
	for s := uint64(6); s <= 20; s++ { // laps epoch 0
		if err := r.Append(wire.Pos(5, s), 1, testBody(s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := batch(11); !errors.Is(err, ErrGone) || r.HoldsEpoch(0) || r.First() != wire.Pos(5, 5) {
		t.Fatalf("lapped: %v, holds epoch 0 %v, first %x", err, r.HoldsEpoch(0), r.First())
	}
}
