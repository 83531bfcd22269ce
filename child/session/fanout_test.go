package session

import (
	"bytes"
	"testing"
	"unsafe"

	"tickrelay/child/frames"
	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// TestFanoutTake: each client's frames come out of take back to back, in
// seq order across batches, stamped with their batch's child send time,
// once each, from its subscription's start on (or from what an answer to
// "*" covered of its named symbols); a one-frame client gets the
// arena's bytes without a copy; flushed starts the next round empty.
func TestFanoutTake(t *testing.T) {
	c := frames.NewCore(1<<10, 1<<20)
	b1, b2 := applyN(t, c, 1, 40), applyN(t, c, 41, 80)
	sym1, sym2 := []byte(feedtest.Sym(1)), []byte(feedtest.Sym(2))

	f := newFanout()
	one, two, late, all, both, widened := &Client{}, &Client{}, &Client{}, &Client{}, &Client{}, &Client{}
	f.subscribe(one, frames.SymbolHash(sym1), sym1, false, 0)
	f.subscribe(two, frames.SymbolHash(sym2), sym2, false, 0)
	f.subscribe(late, frames.SymbolHash(sym1), sym1, false, 50) // frames after seq 50 only
	f.subscribe(all, 0, nil, true, 0)
	f.subscribe(both, frames.SymbolHash(sym1), sym1, false, 0)
	f.subscribe(both, 0, nil, true, 0) // "*" too: still each frame once
	f.subscribe(widened, frames.SymbolHash(sym1), sym1, false, 0)
	f.subscribe(widened, 0, nil, true, 50)
	f.covered(widened, 50) // "*"'s answer covered sym1 too, up to 50

	// want is what cl should receive: the frames it subscribes to, with
	// the child send stamp of the batch that carried them.
	var deliveries uint64
	want := func(match func(seq uint64, frame []byte) bool) []byte {
		var out []byte
		for _, x := range []struct {
			b   *frames.Batch
			now int64
		}{{b1, 1001}, {b2, 1002}} {
			for i := 0; i < x.b.Len(); i++ {
				seq, fr := x.b.Frame(i)
				if match(seq, fr) {
					fr = append([]byte(nil), fr...)
					wire.SetChildSend(fr, x.now)
					out = append(out, fr...)
					deliveries++
				}
			}
		}
		return out
	}
	symOf := func(fr []byte) []byte {
		var m wire.Msg
		if _, _, err := wire.DecodeTextFrame(fr, &m); err != nil {
			t.Fatal(err)
		}
		return wire.AppendSymbol(nil, m.Security)
	}
	is := func(sym []byte) func(uint64, []byte) bool {
		return func(_ uint64, fr []byte) bool { return bytes.Equal(symOf(fr), sym) }
	}
	wants := map[*Client][]byte{
		one:     want(is(sym1)),
		two:     want(is(sym2)),
		late:    want(func(seq uint64, fr []byte) bool { return seq > 50 && is(sym1)(seq, fr) }),
		all:     want(func(uint64, []byte) bool { return true }),
		both:    want(func(uint64, []byte) bool { return true }),
		widened: want(func(seq uint64, _ []byte) bool { return seq > 50 }),
	}

	f.add(b1, 1001)
	f.add(b2, 1002)
	if f.frames != deliveries {
		t.Errorf("frames counted %d, want %d", f.frames, deliveries)
	}
	if len(f.dirty) != 6 {
		t.Fatalf("%d dirty clients, want 6", len(f.dirty))
	}
	for _, cl := range f.dirty {
		if got := f.take(cl); !bytes.Equal(got, wants[cl]) {
			t.Errorf("client %p got\n%q\nwant\n%q", cl, got, wants[cl])
		}
		if got := f.take(cl); got != nil {
			t.Errorf("second take returned %q", got)
		}
	}
	f.flushed()

	// Next round: a single frame is handed out as the arena's own bytes.
	b3 := applyN(t, c, 81, 81)
	f.add(b3, 1003)
	got := f.take(all)
	if len(got) == 0 || !arenaHolds(f.arena, got) {
		t.Errorf("one frame was copied (or lost): %q", got)
	}
	_, fr := b3.Frame(0)
	fr = append([]byte(nil), fr...)
	wire.SetChildSend(fr, 1003)
	if !bytes.Equal(got, fr) {
		t.Errorf("one frame: got %q want %q", got, fr)
	}
}

func arenaHolds(arena, b []byte) bool {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(arena)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(arena))
}
