package child

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"tickrelay/wire"
)

func applyN(t testing.TB, c *Core, from, to uint64) *Batch {
	b := getBatch()
	for s := from; s <= to; s++ {
		body := testBody(s)
		h, _ := wire.ParseFeedBody(body)
		it := wire.Item{Seq: s, ExchSend: h.SendTime, RootRecv: 5, Body: body}
		if err := c.Apply(b, &it, 6, 7); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestCoreParseOnce(t *testing.T) {
	c := NewCore(16, 1<<16)
	b := applyN(t, c, 1, 10)
	if b.Len() != 10 || c.LastSeq() != 10 {
		t.Fatalf("frames %d last %d", b.Len(), c.LastSeq())
	}
	for i := 0; i < b.Len(); i++ {
		seq, f := b.Frame(i)
		var m wire.Msg
		gs, st, err := wire.DecodeTextFrame(f, &m)
		if err != nil || gs != seq || m != testMsg(seq) || st.RootSend != 6 || st.ChildRecv != 7 || st.ChildSend != 0 {
			t.Fatalf("frame %d: %q %v", i, f, err)
		}
		if b.frames[i].hash != SymbolHash([]byte(testSym(seq))) {
			t.Fatalf("frame %d: wrong symbol hash", i)
		}
	}
	// A body that does not decode consumes its seq and makes no frame.
	bad := wire.Item{Seq: 11, Body: []byte("short")}
	if err := c.Apply(b, &bad, 6, 7); err == nil || c.LastSeq() != 11 || c.Bad() != 1 || b.Len() != 10 {
		t.Fatalf("bad item: %v last %d", err, c.LastSeq())
	}
}

func TestHistoryBounds(t *testing.T) {
	// By count: 8 slots.
	c := NewCore(8, 1<<16)
	applyN(t, c, 1, 20)
	if c.OldestSeq() != 13 {
		t.Fatalf("oldest %d, want 13", c.OldestSeq())
	}
	if _, ok := c.AppendHistory(nil, 12, nil, true, 1); ok {
		t.Fatal("seq 12 should be gone")
	}
	out, ok := c.AppendHistory(nil, 15, nil, true, 99)
	if !ok || bytes.Count(out, []byte{'\n'}) != 6 {
		t.Fatalf("history from 15: %v %q", ok, out)
	}
	// Future seqs are fine (nothing yet).
	if out, ok := c.AppendHistory(nil, 25, nil, true, 1); !ok || len(out) != 0 {
		t.Fatal("future resume")
	}
	// By bytes: frames are ~150-200 B; 1 KiB holds a handful; every
	// frame held must be intact and in order.
	c = NewCore(1024, 1024)
	for s := uint64(1); s <= 500; s++ {
		applyN(t, c, s, s)
		var prev uint64
		c.hist.scan(0, func(seq, _ uint64, f []byte) bool {
			var m wire.Msg
			gs, _, err := wire.DecodeTextFrame(f, &m)
			if err != nil || gs != seq || m != testMsg(seq) || (prev != 0 && seq != prev+1) {
				t.Fatalf("after %d: held seq %d corrupt: %v %q", s, seq, err, f)
			}
			prev = seq
			return true
		})
		if prev != s || (s > 3 && c.hist.len() < 3) {
			t.Fatalf("after %d: newest held %d, %d held", s, prev, c.hist.len())
		}
	}
	// A discontinuity starts a new run.
	applyN(t, c, 600, 601)
	if c.OldestSeq() != 600 {
		t.Fatalf("oldest after jump %d", c.OldestSeq())
	}
}

func TestCoreImage(t *testing.T) {
	c := NewCore(1024, 1<<20)
	applyN(t, c, 1, 400)
	sym := []byte("00003")
	img := c.AppendImage(nil, sym, 123)
	lines := strings.Split(strings.TrimSuffix(string(img), "\n"), "\n")
	kinds := map[string]uint64{}
	var prev uint64
	for _, l := range lines {
		var m wire.Msg
		seq, st, err := wire.DecodeTextFrame([]byte(l), &m)
		if err != nil || m.Security != 3 || st.ChildSend != 123 || seq < prev {
			t.Fatalf("image line %q: %v", l, err)
		}
		prev = seq
		kinds[l[:2]] = seq
	}
	// Each kind's last seq for symbol 3.
	want := map[string]uint64{}
	for s := uint64(1); s <= 400; s++ {
		if testSym(s) == "00003" {
			want[map[uint16]string{wire.TypeNominalPrice: "NP", wire.TypeTrade: "TR", wire.TypeAggregateBook: "BK", wire.TypeStatistics: "ST"}[testMsg(s).Type]] = s
		}
	}
	if fmt.Sprint(kinds) != fmt.Sprint(want) || len(lines) != len(want) || len(want) < 3 {
		t.Fatalf("image kinds %v, want %v: %q", kinds, want, img)
	}
	// The book line carries every level held, as "new".
	book := lines[0]
	for _, l := range lines {
		if strings.HasPrefix(l, "BK") {
			book = l
		}
	}
	if !strings.Contains(book, ":0:") || strings.Contains(book, " n=0 ") {
		t.Fatalf("book image %q", book)
	}
	if len(c.AppendImage(nil, []byte("99999"), 1)) != 0 || len(c.AppendImage(nil, []byte("ABC"), 1)) != 0 {
		t.Fatal("image of unknown symbol")
	}
	if string(CanonicalSymbol(nil, []byte("7"))) != "00007" || string(CanonicalSymbol(nil, []byte("X.Y"))) != "X.Y" {
		t.Fatal("CanonicalSymbol")
	}
}

func TestBookImage(t *testing.T) {
	var s symState
	m := wire.Msg{Type: wire.TypeAggregateBook, NumEntries: 3}
	m.Entries[0] = wire.BookEntry{AggQty: 10, Price: 100, NumOrders: 1, Side: 0, Level: 1, Action: 0}
	m.Entries[1] = wire.BookEntry{AggQty: 20, Price: 101, NumOrders: 2, Side: 1, Level: 1, Action: 0}
	m.Entries[2] = wire.BookEntry{AggQty: 30, Price: 99, NumOrders: 3, Side: 0, Level: 2, Action: 1}
	s.applyBook(&m)
	m.NumEntries = 1
	m.Entries[0] = wire.BookEntry{Side: 0, Level: 1, Action: 2}
	s.applyBook(&m)
	if s.book[0][0] != (wire.BookEntry{}) || s.book[0][1].AggQty != 30 || s.book[1][0].AggQty != 20 {
		t.Fatalf("book %v", s.book)
	}
	m.Entries[0] = wire.BookEntry{Action: 74}
	s.applyBook(&m)
	if s.book != ([2][bookLevels]wire.BookEntry{}) {
		t.Fatal("clear")
	}
}
