package frames

import (
	"cmp"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"tickrelay/wire"
)

// Image kinds kept per symbol: the last frame of each.
const (
	kindSD = iota
	kindSS
	kindNP
	kindTR
	kindST
	kindCP
	nKinds
)

// ImageFrames is the most frames one symbol's image holds: the last of each
// kept kind and the book.
const ImageFrames = nKinds + 1

func kindOf(t uint16) int {
	switch t {
	case wire.TypeSecurityDefinition:
		return kindSD
	case wire.TypeSecurityStatus:
		return kindSS
	case wire.TypeNominalPrice:
		return kindNP
	case wire.TypeTrade:
		return kindTR
	case wire.TypeStatistics:
		return kindST
	case wire.TypeClosingPrice:
		return kindCP
	}
	return -1
}

// bookLevels is the depth of the aggregated book kept per side.
const bookLevels = wire.MaxBookEntries / 2

// symState is the last-value image of one symbol.
type symState struct {
	last [nKinds]struct {
		seq   uint64
		frame []byte
	}
	book     [2][bookLevels]wire.BookEntry // [side][level-1]; NumOrders==0 && AggQty==0 && Price==0 means empty
	bookSeq  uint64
	bookTime wire.Stamps
}

// Core is the pure heart of the child: it parses each relay item once into
// a text frame, keeps the frame history for RESUME and the last value per
// symbol for SUB images. It does no I/O, reads no clock and is not safe for
// concurrent use (the Child guards it with an RWMutex: the relay lines
// write, one at a time, loops read snapshots).
type Core struct {
	epoch uint32 // of the items applied (wire.Pos)
	// The history counts its frames across epochs: seq+base is a frame's
	// ordinal in the current epoch, whose first ordinal is start (base
	// may wrap below zero; ordinals do not); prev is the epoch before, which
	// the history keeps until its frames are evicted, so that clients
	// behind at a reset can still be given its end.
	base, start uint64
	prev        struct {
		held              bool
		epoch             uint32
		base, start, last uint64
	}
	last    uint64
	hist    *history
	syms    map[uint32]*symState
	codes   []uint32 // the keys of syms, ascending: the order of SUB *'s image
	msg     wire.Msg
	symText []byte
	bad     uint64
}

// NewCore returns a core whose history holds at most historyFrames frames in
// historyBytes bytes.
func NewCore(historyFrames, historyBytes int) *Core {
	return &Core{hist: newHistory(historyFrames, historyBytes), syms: make(map[uint32]*symState)}
}

// Codes is every symbol code seen, ascending; the caller must not keep it
// past its hold of the core.
func (c *Core) Codes() []uint32 { return c.codes }

// LastSeq is the seq of the last item applied (0 before any).
func (c *Core) LastSeq() uint64 { return c.last }

// Epoch is the epoch of the items applied.
func (c *Core) Epoch() uint32 { return c.epoch }

// Reset starts epoch at seq next: every image goes (they were the last
// epoch's), as the exchange's own state starts over, and the history is
// the new epoch's from next on; what it held of the last one stays
// readable with AppendPrevWhere until it is evicted.
func (c *Core) Reset(epoch uint32, next uint64) {
	c.prev.held, c.prev.epoch, c.prev.base, c.prev.start, c.prev.last = true, c.epoch, c.base, c.start, c.last
	c.base, c.start = c.hist.next-next, c.hist.next // ordinals run on (mod 2^64)
	c.epoch, c.last = epoch, next-1
	clear(c.syms)
	c.codes = c.codes[:0]
}

// Bad counts items whose body did not decode (they consume their seq).
func (c *Core) Bad() uint64 { return c.bad }

// Skip makes last the last seq, with nothing held before it: the child
// starts past the feed's start (FromSeq) or skipped seqs its root no longer
// held. RESUME from a seq up to last is then answered GONE, not silently
// served from a later seq.
func (c *Core) Skip(last uint64) {
	if last > c.last {
		c.last = last
		c.start = last + 1 + c.base
		c.hist.reset(c.start)
		c.prev.held = false
	}
}

// OldestSeq is the first seq RESUME can serve (0 when the history holds
// nothing of the epoch).
func (c *Core) OldestSeq() uint64 {
	if c.hist.next <= c.start || c.hist.next == c.hist.first {
		return 0
	}
	return max(c.hist.first, c.start) - c.base
}

// Apply parses one item into b (child send stamp left zero), records it in
// the history and the image of its symbol. Items should come in seq order;
// one that does not follow the previous starts a new history run. A body
// that does not decode consumes its seq, makes no frame and returns the error.
func (c *Core) Apply(b *Batch, it *wire.Item, rootSend, childRecv int64) error {
	c.last = it.Seq
	if _, err := wire.DecodeMsg(it.Body, &c.msg); err != nil {
		c.bad++
		c.hist.add(it.Seq+c.base, 0, nil)
		return err
	}
	m := &c.msg
	st := wire.Stamps{ExchSend: it.ExchSend, RootRecv: it.RootRecv, RootSend: rootSend, ChildRecv: childRecv}
	off := len(b.Buf)
	b.Buf = wire.AppendTextFrame(b.Buf, it.Seq, m, st)
	frame := b.Buf[off:]
	c.symText = wire.AppendSymbol(c.symText[:0], m.Security)
	h := xxhash.Sum64(c.symText)
	b.Frames = append(b.Frames, FrameRef{Seq: it.Seq, Hash: h, Off: int32(off), End: int32(len(b.Buf))})
	c.hist.add(it.Seq+c.base, h, frame)

	s := c.syms[m.Security]
	if s == nil {
		s = new(symState)
		c.syms[m.Security] = s
		i, _ := slices.BinarySearch(c.codes, m.Security)
		c.codes = slices.Insert(c.codes, i, m.Security)
	}
	if k := kindOf(m.Type); k >= 0 {
		s.last[k].seq = it.Seq
		s.last[k].frame = append(s.last[k].frame[:0], frame...)
	} else if m.Type == wire.TypeAggregateBook {
		s.applyBook(m)
		s.bookSeq, s.bookTime = it.Seq, st
	}
	return nil
}

func (s *symState) applyBook(m *wire.Msg) {
	for i := 0; i < int(m.NumEntries); i++ {
		e := &m.Entries[i]
		if e.Action == 74 { // clear the whole book
			s.book = [2][bookLevels]wire.BookEntry{}
			continue
		}
		if e.Side > 1 || e.Level < 1 || int(e.Level) > bookLevels {
			continue
		}
		lv := &s.book[e.Side][e.Level-1]
		switch e.Action {
		case 0, 1:
			*lv = *e
			lv.Action = 0
		case 2:
			*lv = wire.BookEntry{}
		}
	}
}

// SymbolHash is the index key of a symbol's text.
func SymbolHash(sym []byte) uint64 { return xxhash.Sum64(sym) }

// CanonicalSymbol rewrites a numeric symbol the way frames print it
// ("1" -> "00001"); other symbols are returned as they are.
func CanonicalSymbol(dst, sym []byte) []byte {
	if code, ok := wire.ParseSymbol(sym); ok {
		return wire.AppendSymbol(dst, code)
	}
	return append(dst, sym...)
}

// AppendImage appends the image of a (canonical) symbol: the last frame of
// each kept kind and the aggregated book as one BK frame with every held
// level as "new", in seq order, each with child send stamp now. The image
// reflects every item up to LastSeq.
func (c *Core) AppendImage(dst []byte, sym []byte, now int64) []byte {
	code, ok := wire.ParseSymbol(sym)
	if !ok {
		return dst
	}
	if s := c.syms[code]; s != nil {
		dst = s.appendImage(dst, code, now)
	}
	return dst
}

// AppendAllImages appends the image of every symbol seen (SUB *), in
// symbol order.
func (c *Core) AppendAllImages(dst []byte, now int64) []byte {
	dst, _, _ = c.AppendImages(dst, 0, len(c.codes), now)
	return dst
}

// AppendImages appends the images of up to n symbols with code >= from, in
// symbol order: one part of SUB *'s image. It returns the code the next
// part starts at; more is false when none is left.
func (c *Core) AppendImages(dst []byte, from uint32, n int, now int64) (out []byte, next uint32, more bool) {
	i, _ := slices.BinarySearch(c.codes, from)
	end := min(i+n, len(c.codes))
	for _, code := range c.codes[i:end] {
		dst = c.syms[code].appendImage(dst, code, now)
	}
	if end == len(c.codes) {
		return dst, 0, false
	}
	return dst, c.codes[end], true
}

// ImageCut says how far one part of an image built in parts (AppendImages)
// went: the symbols with code >= From, up to the next cut's From, were
// imaged as of seq Seq.
type ImageCut struct {
	From uint32
	Seq  uint64
}

// AppendMissed appends, in seq order and with child send stamp now, every
// held frame a part of an image missed: a frame newer than the cut (cuts in
// ascending From, starting at 0) its symbol falls in. After it the image is
// as if taken at LastSeq in one piece. It reports false, appending nothing,
// when the history no longer holds every seq after the first cut.
func (c *Core) AppendMissed(dst []byte, cuts []ImageCut, now int64) ([]byte, bool) {
	from := cuts[0].Seq + 1
	if from > c.last {
		return dst, true
	}
	if o := c.OldestSeq(); o == 0 || o > from {
		return dst, false
	}
	c.hist.scan(from+c.base, func(o, _ uint64, frame []byte) bool {
		seq := o - c.base
		code, _ := wire.TextFrameCode(frame) // a frame we made: always numeric
		i, found := slices.BinarySearchFunc(cuts, code, func(cut ImageCut, code uint32) int { return cmp.Compare(cut.From, code) })
		if !found {
			i-- // the cut before the first From above code
		}
		if seq > cuts[i].Seq {
			dst = appendStamped(dst, frame, now)
		}
		return true
	})
	return dst, true
}

// appendImage appends s's image (AppendImage); code is its symbol.
func (s *symState) appendImage(dst []byte, code uint32, now int64) []byte {
	var order [nKinds + 1]struct {
		seq  uint64
		kind int
	}
	n := 0
	for k := range s.last {
		if len(s.last[k].frame) > 0 {
			order[n].seq, order[n].kind = s.last[k].seq, k
			n++
		}
	}
	if s.bookSeq != 0 {
		order[n].seq, order[n].kind = s.bookSeq, nKinds
		n++
	}
	slices.SortFunc(order[:n], func(a, b struct {
		seq  uint64
		kind int
	}) int {
		return int(int64(a.seq - b.seq))
	})
	for _, o := range order[:n] {
		at := len(dst)
		if o.kind < nKinds {
			dst = append(dst, s.last[o.kind].frame...)
		} else {
			m := wire.Msg{Type: wire.TypeAggregateBook, Security: code}
			for side := range s.book {
				for l := range s.book[side] {
					if e := s.book[side][l]; e != (wire.BookEntry{}) {
						m.Entries[m.NumEntries] = e
						m.NumEntries++
					}
				}
			}
			dst = wire.AppendTextFrame(dst, o.seq, &m, s.bookTime)
		}
		wire.SetChildSend(dst[at:], now)
	}
	return dst
}

// AppendHistory appends every held frame with seq >= from whose symbol hash
// is in hashes (sorted; all frames if all), with child send stamp now, and reports
// false (appending nothing) when from is older than the history holds.
// Seqs beyond LastSeq are simply not there yet.
func (c *Core) AppendHistory(dst []byte, from uint64, hashes []uint64, all bool, now int64) ([]byte, bool) {
	dst, _, ok := c.AppendHistoryPart(dst, from, hashes, all, now, math.MaxInt)
	return dst, ok
}

// AppendHistoryPart is AppendHistory over at most n seqs from from on: one
// part of a long RESUME. next is the seq the next part starts at (LastSeq+1
// once this part reached the end).
func (c *Core) AppendHistoryPart(dst []byte, from uint64, hashes []uint64, all bool, now int64, n int) (out []byte, next uint64, ok bool) {
	return c.AppendHistoryWhere(dst, from, now, n, math.MaxInt, func(_, h uint64, _ []byte) bool {
		_, in := slices.BinarySearch(hashes, h)
		return all || in
	})
}

// AppendHistoryWhere appends the held frames with seq >= from that want
// picks, over at most n seqs and until it has appended maxBytes or more,
// with child send stamp now; next and ok are AppendHistoryPart's.
func (c *Core) AppendHistoryWhere(dst []byte, from uint64, now int64, n, maxBytes int, want func(seq, hash uint64, frame []byte) bool) (out []byte, next uint64, ok bool) {
	if from <= c.last && (c.OldestSeq() == 0 || from < c.OldestSeq()) {
		return dst, from, false
	}
	next = max(from, c.last+1)
	start := len(dst)
	c.hist.scan(from+c.base, func(o, h uint64, frame []byte) bool {
		seq := o - c.base
		if seq-from >= uint64(n) || len(dst)-start >= maxBytes {
			next = seq
			return false
		}
		if want(seq, h, frame) {
			dst = appendStamped(dst, frame, now)
		}
		return true
	})
	return dst, next, true
}

// AppendPrevWhere is AppendHistoryWhere in the epoch before the current
// one, if that is epoch: the frames the history still holds of it from
// seq from to its last. level reports that next is past its last; ok is
// false when the history no longer holds from (or holds nothing of epoch).
func (c *Core) AppendPrevWhere(dst []byte, epoch uint32, from uint64, now int64, maxBytes int, want func(seq, hash uint64, frame []byte) bool) (out []byte, next uint64, ok, level bool) {
	p := &c.prev
	if !p.held || epoch != p.epoch || epoch == c.epoch {
		return dst, from, false, false
	}
	if from > p.last {
		return dst, from, true, true
	}
	o := from + p.base
	if o < p.start || o < c.hist.first { // before what it held of the epoch, or evicted
		return dst, from, false, false
	}
	next, start := from, len(dst)
	end := p.last + p.base // its last ordinal
	c.hist.scan(o, func(o, h uint64, frame []byte) bool {
		seq := o - p.base
		if o > end || len(dst)-start >= maxBytes {
			return false
		}
		if want(seq, h, frame) {
			dst = appendStamped(dst, frame, now)
		}
		next = seq + 1
		return true
	})
	return dst, next, true, next > p.last
}

// appendStamped appends a held frame with child send stamp now.
func appendStamped(dst, frame []byte, now int64) []byte {
	at := len(dst)
	dst = append(dst, frame...)
	wire.SetChildSend(dst[at:], now)
	return dst
}
