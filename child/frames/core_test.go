package frames

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// applyN applies the test feed's seqs from..to to c (root send 6, child
// receive 7) and returns the batch of their frames.
func applyN(t testing.TB, c *Core, from, to uint64) *Batch {
	b := GetBatch()
	for s := from; s <= to; s++ {
		it := feedtest.Item(s)
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
		if err != nil || gs != seq || m != feedtest.Msg(seq) || st.RootSend != 6 || st.ChildRecv != 7 || st.ChildSend != 0 {
			t.Fatalf("frame %d: %q %v", i, f, err)
		}
		if b.Frames[i].Hash != SymbolHash([]byte(feedtest.Sym(seq))) {
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
			if err != nil || gs != seq || m != feedtest.Msg(seq) || (prev != 0 && seq != prev+1) {
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
		if feedtest.Sym(s) == "00003" {
			want[map[uint16]string{wire.TypeNominalPrice: "NP", wire.TypeTrade: "TR", wire.TypeAggregateBook: "BK", wire.TypeStatistics: "ST"}[feedtest.Msg(s).Type]] = s
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

// partsMsg is the message of seq in TestImageInParts' feed: 1000 symbols
// (even codes) up to seq 3000, then new ones (odd codes) among them.
func partsMsg(seq uint64) wire.Msg {
	m := feedtest.Msg(seq)
	if seq <= 3000 {
		m.Security = uint32(2 * ((seq*7)%1000 + 1))
	} else {
		m.Security = uint32((seq*13)%2000 + 1)
	}
	return m
}

func applyParts(t *testing.T, c *Core, from, to uint64) {
	t.Helper()
	b := GetBatch()
	defer b.Release()
	for s := from; s <= to; s++ {
		m := partsMsg(s)
		f, ok := wire.AppendMsgFrame(nil, s, int64(s), &m)
		if !ok {
			t.Fatal("encode")
		}
		it := wire.Item{Seq: s, ExchSend: int64(s), RootRecv: 5, Body: f[wire.FeedLenSize:]}
		if err := c.Apply(b, &it, 6, 7); err != nil {
			t.Fatal(err)
		}
		b.Buf, b.Frames = b.Buf[:0], b.Frames[:0]
	}
}

// TestImageInParts: SUB *'s image built in parts while items keep coming
// (AppendImages, then AppendMissed) brings a client to exactly the state
// the core holds at the end: per symbol, the last frame of each kind and
// the book, with no update twice and none missing.
func TestImageInParts(t *testing.T) {
	c := NewCore(1<<14, 16<<20)
	applyParts(t, c, 1, 3000)
	var img []byte
	var cuts []ImageCut
	seq := uint64(3000)
	for from, more := uint32(0), true; more; {
		cuts = append(cuts, ImageCut{From: from, Seq: c.LastSeq()})
		img, from, more = c.AppendImages(img, from, 100, 1)
		applyParts(t, c, seq+1, seq+37) // the relay applies items between parts
		seq += 37
	}
	imaged := len(img)
	out, ok := c.AppendMissed(img, cuts, 1)
	if !ok || len(cuts) < 10 {
		t.Fatalf("AppendMissed %v over %d parts", ok, len(cuts))
	}
	cutOf := func(code uint32) ImageCut {
		i := len(cuts) - 1
		for cuts[i].From > code {
			i--
		}
		return cuts[i]
	}
	// What the client ends up with, symbol by symbol.
	model := map[uint32]*symState{}
	missed, newInOldPart := 0, false
	for at := 0; at < len(out); {
		n := bytes.IndexByte(out[at:], '\n') + 1
		line := out[at : at+n]
		var m wire.Msg
		s, _, err := wire.DecodeTextFrame(line, &m)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		st := model[m.Security]
		if st == nil {
			st = new(symState)
			model[m.Security] = st
		}
		if at >= imaged { // a missed update: newer than its symbol's part
			missed++
			if cut := cutOf(m.Security); s <= cut.Seq {
				t.Fatalf("seq %d of %05d again: its part was taken at %d", s, m.Security, cut.Seq)
			}
			newInOldPart = newInOldPart || (m.Security%2 == 1 && c.syms[m.Security] != nil && m.Security < cuts[len(cuts)-1].From)
		}
		if k := kindOf(m.Type); k >= 0 {
			if s <= st.last[k].seq {
				t.Fatalf("%05d kind %d: seq %d after %d", m.Security, k, s, st.last[k].seq)
			}
			st.last[k].seq = s
		} else {
			st.applyBook(&m)
		}
		at += n
	}
	wantMissed := 0
	for s := uint64(3001); s <= c.LastSeq(); s++ {
		if s > cutOf(partsMsg(s).Security).Seq {
			wantMissed++
		}
	}
	if missed != wantMissed || !newInOldPart {
		t.Fatalf("%d missed updates, want %d (a new symbol in an earlier part: %v)", missed, wantMissed, newInOldPart)
	}
	if len(model) != len(c.syms) {
		t.Fatalf("client knows %d symbols, core %d", len(model), len(c.syms))
	}
	for code, s := range c.syms {
		got := model[code]
		for k := range s.last {
			if got.last[k].seq != s.last[k].seq {
				t.Fatalf("%05d kind %d: client at seq %d, core %d", code, k, got.last[k].seq, s.last[k].seq)
			}
		}
		if got.book != s.book {
			t.Fatalf("%05d: client's book differs from the core's", code)
		}
	}

	// A history too short for what the parts missed: AppendMissed says so.
	short := NewCore(64, 1<<20)
	applyParts(t, short, 1, 3000)
	cuts = []ImageCut{{0, short.LastSeq()}}
	applyParts(t, short, 3001, 3100)
	if out, ok := short.AppendMissed(nil, cuts, 1); ok || len(out) != 0 {
		t.Fatal("AppendMissed over seqs the history lost")
	}
}

// TestHistoryInParts: a RESUME scanned in parts gives what one scan gives.
func TestHistoryInParts(t *testing.T) {
	c := NewCore(1024, 1<<20)
	applyN(t, c, 1, 700)
	hashes := []uint64{SymbolHash([]byte("00003")), SymbolHash([]byte("00011")), SymbolHash([]byte("00017"))}
	slices.Sort(hashes)
	for _, all := range []bool{true, false} {
		whole, ok := c.AppendHistory(nil, 40, hashes, all, 9)
		if !ok {
			t.Fatal("history from 40")
		}
		want := feedtest.Seqs(39, 700, "00003", "00011", "00017")
		if all {
			want = feedtest.Seqs(39, 700, "*")
		}
		if n := bytes.Count(whole, []byte("\n")); n != len(want) {
			t.Fatalf("all=%v: history from 40 has %d frames, want %d", all, n, len(want))
		}
		var parts []byte
		next, n := uint64(40), 0
		for ; next <= c.LastSeq(); n++ {
			parts, next, ok = c.AppendHistoryPart(parts, next, hashes, all, 9, 50)
			if !ok {
				t.Fatal("part")
			}
		}
		if !bytes.Equal(parts, whole) || n != 14 || next != 701 {
			t.Fatalf("all=%v: %d parts ending at %d, %d bytes vs %d", all, n, next, len(parts), len(whole))
		}
	}
	applyN(t, c, 701, 2000) // seq 100 is evicted: the next part must say so
	if _, _, ok := c.AppendHistoryPart(nil, 100, nil, true, 9, 50); ok {
		t.Fatal("a part from an evicted seq")
	}
}

// TestCoreEpochs: after a Reset the history serves the new epoch from its
// first seq (the old epoch's frames are not mistaken for its seqs), the
// old epoch's end stays readable with AppendPrevWhere until evicted, and
// the images start over.
func TestCoreEpochs(t *testing.T) {
	seqsOf := func(b []byte) (out []uint64) {
		for len(b) > 0 {
			line, n, _ := wire.NextLine(b)
			var m wire.Msg
			seq, _, _ := wire.DecodeTextFrame(line, &m)
			out = append(out, seq)
			b = b[n:]
		}
		return out
	}
	all := func(_, _ uint64, _ []byte) bool { return true }
	c := NewCore(256, 1<<20)
	applyN(t, c, 1, 100)
	c.Reset(5, 1)
	if c.Epoch() != 5 || c.LastSeq() != 0 || c.OldestSeq() != 0 || len(c.AppendAllImages(nil, 1)) != 0 {
		t.Fatalf("after the reset: epoch %d last %d oldest %d", c.Epoch(), c.LastSeq(), c.OldestSeq())
	}
	applyN(t, c, 1, 50)
	out, next, ok := c.AppendHistoryWhere(nil, 1, 1, 1000, 1<<20, all)
	if got := seqsOf(out); !ok || next != 51 || len(got) != 50 || got[0] != 1 || got[49] != 50 || c.OldestSeq() != 1 {
		t.Fatalf("new epoch's history: %v next %d ok %v oldest %d", got, next, ok, c.OldestSeq())
	}
	out, next, ok, level := c.AppendPrevWhere(nil, 0, 91, 1, 1<<20, all)
	if got := seqsOf(out); !ok || !level || next != 101 || len(got) != 10 || got[0] != 91 {
		t.Fatalf("the last epoch's end: %v next %d ok %v level %v", got, next, ok, level)
	}
	if _, _, ok, _ := c.AppendPrevWhere(nil, 4, 91, 1, 1<<20, all); ok {
		t.Fatal("an epoch the core never had served")
	}
	applyN(t, c, 51, 400) // the old epoch's frames are evicted
	if _, _, ok, _ := c.AppendPrevWhere(nil, 0, 91, 1, 1<<20, all); ok {
		t.Fatal("evicted frames of the last epoch served")
	}
	if c.OldestSeq() != 400-255 {
		t.Fatalf("oldest %d", c.OldestSeq())
	}
}
