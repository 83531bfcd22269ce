package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"tickrelay/wire"
)

// Header is a capture's file header.
type Header struct {
	Version uint16
	Created int64  // ns since the epoch
	Source  string // what was recorded
	Size    int64  // header bytes (the first block starts here)
}

// Reader reads a capture file. Open finds its blocks (from the index, or
// by scanning when the index is missing); Cursors read records. A Reader
// is safe for concurrent use by several Cursors (each reads with ReadAt).
type Reader struct {
	f       *os.File
	path    string
	size    int64
	hdr     Header
	blocks  []BlockInfo
	records uint64
	indexed bool
	damage  error
}

// Open opens a capture. A capture that was not closed cleanly (no index
// and trailer) has its index rebuilt by scanning and verifying every block;
// the scan stops at the first torn or corrupt block and Damage reports it
// (with its byte offset) while the blocks before it stay readable. A file
// that is not a capture, or of another format version, is refused.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	r := &Reader{f: f, path: path}
	if err := r.open(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (r *Reader) corrupt(off int64, what, format string, args ...any) error {
	return &CorruptError{Path: r.path, Offset: off, What: what, Reason: fmt.Sprintf(format, args...)}
}

func (r *Reader) open() error {
	st, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	r.size = st.Size()
	var fixed [fileHeaderFixed]byte
	if n, _ := r.f.ReadAt(fixed[:], 0); n < len(Magic) || string(fixed[:len(Magic)]) != Magic {
		if r.size < int64(len(Magic)) {
			return r.corrupt(0, "file header", "file of %d bytes is too short to be a capture", r.size)
		}
		return r.corrupt(0, "file header", "not a tickrelay capture (magic %q, want %q)", fixed[:len(Magic)], Magic)
	} else if n < fileHeaderFixed {
		return r.corrupt(int64(n), "file header", "truncated: file ends at byte %d", r.size)
	}
	le := binary.LittleEndian
	version := le.Uint16(fixed[5:])
	if version < minVersion || version > Version {
		return &VersionError{Path: r.path, Got: version}
	}
	srcLen := int(le.Uint16(fixed[15:]))
	if srcLen > maxSource {
		return r.corrupt(15, "file header", "source length %d > %d", srcLen, maxSource)
	}
	hdr := make([]byte, fileHeaderFixed+srcLen+4)
	if n, _ := r.f.ReadAt(hdr, 0); n < len(hdr) {
		return r.corrupt(int64(n), "file header", "truncated: file ends at byte %d, header needs %d", r.size, len(hdr))
	}
	if got, want := le.Uint32(hdr[len(hdr)-4:]), crc(hdr[:len(hdr)-4]); got != want {
		return r.corrupt(0, "file header", "CRC32C mismatch (stored %08x, computed %08x)", got, want)
	}
	r.hdr = Header{Version: version, Created: int64(le.Uint64(hdr[7:])), Source: string(hdr[fileHeaderFixed : fileHeaderFixed+srcLen]), Size: int64(len(hdr))}
	if r.readIndex() {
		r.indexed = true
	} else {
		r.scan()
	}
	for _, b := range r.blocks {
		r.records += uint64(b.Count)
	}
	return nil
}

// readIndex loads the index through the trailer; false means it is
// missing or unusable (then scan rebuilds it).
func (r *Reader) readIndex() bool {
	if r.size < r.hdr.Size+indexHeaderSize+trailerSize {
		return false
	}
	var t [trailerSize]byte
	if _, err := r.f.ReadAt(t[:], r.size-trailerSize); err != nil {
		return false
	}
	le := binary.LittleEndian
	if [4]byte(t[:4]) != tagTrailer || le.Uint32(t[28:]) != crc(t[:28]) {
		return false
	}
	idxOff, nblocks, records := int64(le.Uint64(t[4:])), int64(le.Uint32(t[12:])), le.Uint64(t[16:])
	if idxOff < r.hdr.Size || idxOff+indexHeaderSize+nblocks*indexEntrySize+trailerSize != r.size {
		return false
	}
	b := make([]byte, indexHeaderSize+nblocks*indexEntrySize)
	if _, err := r.f.ReadAt(b, idxOff); err != nil {
		return false
	}
	if [4]byte(b[:4]) != tagIndex || int64(le.Uint32(b[4:])) != nblocks || le.Uint32(b[8:]) != crc(b[indexHeaderSize:]) {
		return false
	}
	blocks := make([]BlockInfo, nblocks)
	var n uint64
	end := r.hdr.Size
	for i := range blocks {
		bi := parseIndexEntry(b[indexHeaderSize+i*indexEntrySize:])
		if bi.Offset != end || bi.Count == 0 || (i > 0 && bi.FirstSeq <= blocks[i-1].LastSeq()) {
			return false
		}
		end = bi.Offset + blockHeaderSize + int64(bi.Size)
		n += uint64(bi.Count)
		blocks[i] = bi
	}
	if end != idxOff || n != records {
		return false
	}
	r.blocks = blocks
	return true
}

// scan rebuilds the index by reading every block from the header on,
// stopping at the end, at an index, or at the first damage.
func (r *Reader) scan() {
	var (
		hdr     [blockHeaderSize]byte
		payload []byte
		c       = Cursor{r: r}
	)
	off := r.hdr.Size
	for off < r.size {
		n, _ := r.f.ReadAt(hdr[:], off)
		if n >= 4 && [4]byte(hdr[:4]) == tagIndex {
			return // an index whose trailer was lost: every block is before it
		}
		if n < blockHeaderSize {
			r.damage = r.corrupt(off, "block header", "torn: file ends %d bytes into a %d-byte block header", n, blockHeaderSize)
			return
		}
		bi, sum, why := parseBlockHeader(hdr[:], off)
		if why != "" {
			r.damage = r.corrupt(off, "block header", "%s", why)
			return
		}
		if end := off + blockHeaderSize + int64(bi.Size); end > r.size {
			r.damage = r.corrupt(off, "block", "torn: payload of %d bytes would end at byte %d, file ends at %d", bi.Size, end, r.size)
			return
		}
		if prev := len(r.blocks); prev > 0 && bi.FirstSeq <= r.blocks[prev-1].LastSeq() {
			r.damage = r.corrupt(off, "block header", "first seq %d does not follow the previous block's last %d", bi.FirstSeq, r.blocks[prev-1].LastSeq())
			return
		}
		if cap(payload) < int(bi.Size) {
			payload = make([]byte, bi.Size)
		}
		payload = payload[:bi.Size]
		if m, err := r.f.ReadAt(payload, off+blockHeaderSize); m < len(payload) {
			r.damage = fmt.Errorf("capture %s: read block at byte offset %d: %w", r.path, off, err)
			return
		}
		if err := c.load(bi, sum, payload); err != nil {
			r.damage = err
			return
		}
		r.blocks = append(r.blocks, bi)
		off += blockHeaderSize + int64(bi.Size)
	}
}

// Path is the file name given to Open.
func (r *Reader) Path() string { return r.path }

// Header is the capture's file header.
func (r *Reader) Header() Header { return r.hdr }

// Blocks is the index: every readable block in file order. Do not modify it.
func (r *Reader) Blocks() []BlockInfo { return r.blocks }

// Indexed reports whether the index was read from the file (false: the
// capture was not closed cleanly and Open rebuilt it by scanning).
func (r *Reader) Indexed() bool { return r.indexed }

// Damage is the torn or corrupt block that ended the scan of an unindexed
// capture (a *CorruptError naming its byte offset), or nil.
func (r *Reader) Damage() error { return r.damage }

// Records is the number of readable records.
func (r *Reader) Records() uint64 { return r.records }

// Size is the file size in bytes.
func (r *Reader) Size() int64 { return r.size }

// EpochSpan is the part of a capture in one epoch.
type EpochSpan struct {
	Epoch       uint32
	First, Last uint64 // seqs
	Records     uint64
}

// Epochs lists the epochs of the readable records, oldest first.
func (r *Reader) Epochs() []EpochSpan {
	var out []EpochSpan
	for _, b := range r.blocks {
		e := wire.PosEpoch(b.FirstSeq)
		if n := len(out); n == 0 || out[n-1].Epoch != e {
			out = append(out, EpochSpan{Epoch: e, First: wire.PosSeq(b.FirstSeq)})
		}
		sp := &out[len(out)-1]
		sp.Last, sp.Records = wire.PosSeq(b.LastSeq()), sp.Records+uint64(b.Count)
	}
	return out
}

// FirstSeq and LastSeq bound the readable records, as positions (wire.Pos;
// 0, 0 when empty).
func (r *Reader) FirstSeq() uint64 {
	if len(r.blocks) == 0 {
		return 0
	}
	return r.blocks[0].FirstSeq
}

// LastSeq is the position of the last readable record.
func (r *Reader) LastSeq() uint64 {
	if len(r.blocks) == 0 {
		return 0
	}
	return r.blocks[len(r.blocks)-1].LastSeq()
}

// Verify reads every indexed block and checks its CRC and records.
func (r *Reader) Verify() error {
	c := r.Cursor()
	for i := range r.blocks {
		if err := c.readBlock(i); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Cursor reads records in seq order from a Reader, one block at a time
// into a reused buffer: Next allocates nothing once the buffer has grown.
type Cursor struct {
	r    *Reader
	bi   int    // index of the loaded block (-1: none); next to load is bi+1
	raw  []byte // read buffer: header and payload of block bi
	buf  []byte // payload of block bi (within raw)
	pos  int    // next record in buf
	seq  uint64 // seq of the next record
	left uint32 // records left in buf
}

// Cursor returns a cursor at the first record.
func (r *Reader) Cursor() *Cursor { return &Cursor{r: r, bi: -1} }

// Rewind moves the cursor back to the first record.
func (c *Cursor) Rewind() { c.bi, c.left = -1, 0 }

// SeekSeq positions the cursor at the first record with seq >= seq.
func (c *Cursor) SeekSeq(seq uint64) error {
	bl := c.r.blocks
	i := sort.Search(len(bl), func(i int) bool { return bl[i].LastSeq() >= seq })
	return c.seek(i, func(s uint64, _ int64) bool { return s >= seq })
}

// SeekTime positions the cursor at the first record received at or after t
// (ns). Receive times are taken to be non-decreasing.
func (c *Cursor) SeekTime(t int64) error {
	bl := c.r.blocks
	i := sort.Search(len(bl), func(i int) bool { return bl[i].LastRecv >= t })
	return c.seek(i, func(_ uint64, recv int64) bool { return recv >= t })
}

func (c *Cursor) seek(i int, at func(seq uint64, recv int64) bool) error {
	c.Rewind()
	if i >= len(c.r.blocks) {
		c.bi = len(c.r.blocks) - 1
		return nil
	}
	if err := c.readBlock(i); err != nil {
		return err
	}
	for c.left > 0 {
		recv := int64(binary.LittleEndian.Uint64(c.buf[c.pos:]))
		if at(c.seq, recv) {
			return nil
		}
		l := int(binary.LittleEndian.Uint16(c.buf[c.pos+recordHeader:]))
		c.pos += recordHeader + wire.FeedLenSize + l
		c.seq++
		c.left--
	}
	return nil
}

// Next returns the next record: its receive time and its frame (length
// prefix and body), valid until the next call. It returns io.EOF after the
// last record and a *CorruptError for a damaged block.
func (c *Cursor) Next() (recv int64, frame []byte, err error) {
	for c.left == 0 {
		if c.bi+1 >= len(c.r.blocks) {
			return 0, nil, io.EOF
		}
		if err := c.readBlock(c.bi + 1); err != nil {
			return 0, nil, err
		}
	}
	recv = int64(binary.LittleEndian.Uint64(c.buf[c.pos:]))
	l := int(binary.LittleEndian.Uint16(c.buf[c.pos+recordHeader:]))
	frame = c.buf[c.pos+recordHeader : c.pos+recordHeader+wire.FeedLenSize+l]
	c.pos += recordHeader + wire.FeedLenSize + l
	c.seq++
	c.left--
	return recv, frame, nil
}

// readBlock loads block i, verifying its header, CRC and records.
func (c *Cursor) readBlock(i int) error {
	bi := c.r.blocks[i]
	need := blockHeaderSize + int(bi.Size)
	if cap(c.raw) < need {
		c.raw = make([]byte, need)
	}
	b := c.raw[:need]
	if n, err := c.r.f.ReadAt(b, bi.Offset); n < need {
		if err == nil || errors.Is(err, io.EOF) {
			return c.r.corrupt(bi.Offset, "block", "truncated: file ends at byte %d", c.r.size)
		}
		return fmt.Errorf("capture %s: read block at byte offset %d: %w", c.r.path, bi.Offset, err)
	}
	h, sum, why := parseBlockHeader(b[:blockHeaderSize], bi.Offset)
	if why != "" {
		return c.r.corrupt(bi.Offset, "block header", "%s", why)
	}
	if h.Size != bi.Size || h.FirstSeq != bi.FirstSeq || h.Count != bi.Count {
		return c.r.corrupt(bi.Offset, "block header", "does not match the index (seq %d count %d size %d, index says %d %d %d)",
			h.FirstSeq, h.Count, h.Size, bi.FirstSeq, bi.Count, bi.Size)
	}
	c.bi = -1
	if err := c.load(bi, sum, b[blockHeaderSize:]); err != nil {
		return err
	}
	c.bi = i
	return nil
}

// load checks a payload read for bi against its CRC and walks its records
// (structure and contiguous seqs), then makes it the cursor's block.
func (c *Cursor) load(bi BlockInfo, sum uint32, payload []byte) error {
	base := bi.Offset + blockHeaderSize
	if got := crc(payload); got != sum {
		return c.r.corrupt(bi.Offset, "block payload", "CRC32C mismatch (stored %08x, computed %08x); payload bytes %d..%d",
			sum, got, base, base+int64(len(payload)))
	}
	pos, seq := 0, bi.FirstSeq
	for k := uint32(0); k < bi.Count; k++ {
		if len(payload)-pos < recordHeader {
			return c.r.corrupt(base+int64(pos), "record", "record %d of %d truncated", k, bi.Count)
		}
		body, n, err := wire.NextFeedFrame(payload[pos+recordHeader:])
		if err != nil {
			return c.r.corrupt(base+int64(pos), "record", "record %d (seq %d): %v", k, seq, err)
		}
		if s := binary.LittleEndian.Uint64(body); s != wire.PosSeq(seq) || wire.PosSeq(seq) == 0 {
			return c.r.corrupt(base+int64(pos), "record", "record %d has seq %d, want %d (epoch %d)", k, s, wire.PosSeq(seq), wire.PosEpoch(seq))
		}
		pos += recordHeader + n
		seq++
	}
	if pos != len(payload) {
		return c.r.corrupt(base+int64(pos), "block payload", "%d bytes after the last of %d records", len(payload)-pos, bi.Count)
	}
	c.buf, c.pos, c.seq, c.left = payload, 0, bi.FirstSeq, bi.Count
	return nil
}
