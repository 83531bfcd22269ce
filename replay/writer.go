package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"tickrelay/wire"
)

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	Source  string // what was recorded, for the file header (cut to 1024 bytes)
	Created int64  // creation time for the header, ns (0: now)
	// A block ends, and is written to the OS (no fsync), after FlushRecords
	// records, FlushBytes payload bytes, or once its first record is
	// FlushInterval older than the newest (Append) or than Tick's now.
	FlushRecords  int           // 4096
	FlushBytes    int           // 1 MiB
	FlushInterval time.Duration // 100 ms
}

func (o *WriterOptions) defaults() {
	if o.FlushRecords <= 0 {
		o.FlushRecords = 4096
	}
	if o.FlushBytes <= 0 || o.FlushBytes > MaxBlockPayload-recordHeader-wire.FeedLenSize-wire.MaxFeedBody {
		o.FlushBytes = 1 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.Created == 0 {
		o.Created = time.Now().UnixNano()
	}
	if len(o.Source) > maxSource {
		o.Source = o.Source[:maxSource]
	}
}

// Writer writes a capture: the header at once, a block whenever one fills
// or ages, and the index and trailer on Close. It is not safe for
// concurrent use.
type Writer struct {
	w       io.Writer
	f       *os.File // closed by Close when Create opened it
	opts    WriterOptions
	off     int64  // bytes written so far
	buf     []byte // block header space + payload being built
	cur     BlockInfo
	prevSeq uint64 // a position (wire.Pos)
	epoch   uint32 // of the records appended next
	index   []BlockInfo
	records uint64
	err     error // sticky write error
	closed  bool
}

// Create creates a new capture file at path; an existing file is never
// overwritten.
func Create(path string, opts WriterOptions) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	w, err := NewWriter(f, opts)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	w.f = f
	return w, nil
}

// NewWriter writes a capture header to w and returns a Writer appending to
// it. Close does not close w.
func NewWriter(w io.Writer, opts WriterOptions) (*Writer, error) {
	opts.defaults()
	cw := &Writer{w: w, opts: opts, buf: make([]byte, blockHeaderSize, blockHeaderSize+opts.FlushBytes+recordHeader+wire.FeedLenSize+wire.MaxFeedBody)}
	h := make([]byte, 0, fileHeaderFixed+len(opts.Source)+4)
	h = append(h, Magic...)
	h = binary.LittleEndian.AppendUint16(h, Version)
	h = binary.LittleEndian.AppendUint64(h, uint64(opts.Created))
	h = binary.LittleEndian.AppendUint16(h, uint16(len(opts.Source)))
	h = append(h, opts.Source...)
	h = binary.LittleEndian.AppendUint32(h, crc(h))
	if err := cw.write(h); err != nil {
		return nil, err
	}
	return cw, nil
}

func (w *Writer) write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("capture: write at byte offset %d: %w", w.off, err)
	}
	return w.err
}

// SetEpoch makes the records appended next epoch's (it may not go back).
func (w *Writer) SetEpoch(epoch uint32) error {
	if epoch < w.epoch {
		return fmt.Errorf("capture: SetEpoch %d after %d: epochs must not go back", epoch, w.epoch)
	}
	w.epoch = epoch
	return nil
}

// Append adds one record: the receive time (ns) and the feed frame
// verbatim (length prefix and body, as wire.NextFeedFrame read it), of the
// epoch SetEpoch set. Positions (epoch, seq) must increase; a jump starts
// a new block (records in a block are contiguous).
func (w *Writer) Append(recv int64, frame []byte) error {
	if w.closed {
		return errors.New("capture: Append after Close")
	}
	if w.err != nil {
		return w.err
	}
	if len(frame) < wire.FeedLenSize+wire.MinFeedBody || len(frame) > wire.FeedLenSize+wire.MaxFeedBody ||
		int(binary.LittleEndian.Uint16(frame)) != len(frame)-wire.FeedLenSize {
		return fmt.Errorf("capture: Append: malformed frame of %d bytes", len(frame))
	}
	seq := binary.LittleEndian.Uint64(frame[wire.FeedLenSize:])
	if seq == 0 || seq > wire.MaxSeq {
		return fmt.Errorf("capture: Append: seq %d outside an epoch's 1..%d", seq, uint64(wire.MaxSeq))
	}
	if seq = wire.Pos(w.epoch, seq); seq <= w.prevSeq {
		return fmt.Errorf("capture: Append: epoch %d seq %d after epoch %d seq %d: positions must increase",
			w.epoch, wire.PosSeq(seq), wire.PosEpoch(w.prevSeq), wire.PosSeq(w.prevSeq))
	}
	if w.cur.Count > 0 && seq != w.prevSeq+1 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if w.cur.Count == 0 {
		w.cur = BlockInfo{FirstSeq: seq, FirstRecv: recv}
	}
	w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(recv))
	w.buf = append(w.buf, frame...)
	w.cur.Count++
	w.cur.LastRecv = recv
	w.prevSeq = seq
	w.records++
	if int(w.cur.Count) >= w.opts.FlushRecords || len(w.buf)-blockHeaderSize >= w.opts.FlushBytes ||
		recv-w.cur.FirstRecv >= int64(w.opts.FlushInterval) {
		return w.Flush()
	}
	return nil
}

// Tick ends the current block if its first record is FlushInterval older
// than now (ns); call it when the feed is idle.
func (w *Writer) Tick(now int64) error {
	if w.cur.Count > 0 && now-w.cur.FirstRecv >= int64(w.opts.FlushInterval) {
		return w.Flush()
	}
	return w.err
}

// Flush ends the current block (if any) and writes it to the OS.
func (w *Writer) Flush() error {
	if w.cur.Count == 0 {
		return w.err
	}
	w.cur.Offset = w.off
	w.cur.Size = uint32(len(w.buf) - blockHeaderSize)
	putBlockHeader(w.buf[:blockHeaderSize], w.cur, crc(w.buf[blockHeaderSize:]))
	if err := w.write(w.buf); err != nil {
		return err
	}
	w.index = append(w.index, w.cur)
	w.cur = BlockInfo{}
	w.buf = w.buf[:blockHeaderSize]
	return nil
}

// Records is the number of records appended.
func (w *Writer) Records() uint64 { return w.records }

// LastSeq is the position (wire.Pos) of the last record appended (0 if none).
func (w *Writer) LastSeq() uint64 { return w.prevSeq }

// Size is the number of bytes written to the OS so far.
func (w *Writer) Size() int64 { return w.off }

// Close ends the last block, writes the index and the trailer, and closes
// the file if Create opened it. It is idempotent.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	err := w.Flush()
	if err == nil {
		indexOff := w.off
		b := make([]byte, indexHeaderSize+len(w.index)*indexEntrySize, indexHeaderSize+len(w.index)*indexEntrySize+trailerSize)
		copy(b, tagIndex[:])
		binary.LittleEndian.PutUint32(b[4:], uint32(len(w.index)))
		for i, bi := range w.index {
			putIndexEntry(b[indexHeaderSize+i*indexEntrySize:], bi)
		}
		binary.LittleEndian.PutUint32(b[8:], crc(b[indexHeaderSize:]))
		t := b[len(b) : len(b)+trailerSize]
		copy(t, tagTrailer[:])
		binary.LittleEndian.PutUint64(t[4:], uint64(indexOff))
		binary.LittleEndian.PutUint32(t[12:], uint32(len(w.index)))
		binary.LittleEndian.PutUint64(t[16:], w.records)
		binary.LittleEndian.PutUint32(t[28:], crc(t[:28]))
		err = w.write(b[:len(b)+trailerSize])
	}
	if w.f != nil {
		if cerr := w.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("capture: close: %w", cerr)
		}
	}
	return err
}
