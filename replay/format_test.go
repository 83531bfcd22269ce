package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tickrelay/feed"
	"tickrelay/wire"
)

// testRecord is one record of a synthetic capture.
type testRecord struct {
	recv  int64
	frame []byte
}

// genRecords makes n records from seq first on: generator messages with
// receive times 1 ms apart in groups of 3 (as a socket read stamps them).
func genRecords(n int, first uint64) []testRecord {
	g := feed.NewGenerator(feed.GenConfig{Seed: 7, Symbols: 50})
	var m wire.Msg
	recs := make([]testRecord, 0, n)
	t0 := int64(1_700_000_000_000_000_000)
	for i := range n {
		g.Next(&m)
		seq := first + uint64(i)
		f, _ := wire.AppendMsgFrame(nil, seq, t0+int64(i)*1000, &m)
		recs = append(recs, testRecord{recv: t0 + int64(i/3)*int64(time.Millisecond), frame: f})
	}
	return recs
}

func writeCapture(t testing.TB, path string, recs []testRecord, opts WriterOptions, close bool) {
	t.Helper()
	w, err := Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Append(r.recv, r.frame); err != nil {
			t.Fatal(err)
		}
	}
	if close {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	} else if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !close {
		w.f.Close()
	}
}

// readAll reads every record through a cursor.
func readAll(t testing.TB, r *Reader) ([]testRecord, error) {
	t.Helper()
	c := r.Cursor()
	var out []testRecord
	for {
		recv, f, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, testRecord{recv, bytes.Clone(f)})
	}
}

func sameRecords(t testing.TB, got, want []testRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].recv != want[i].recv || !bytes.Equal(got[i].frame, want[i].frame) {
			t.Fatalf("record %d differs: recv %d/%d, frame % x / % x", i, got[i].recv, want[i].recv, got[i].frame[:12], want[i].frame[:12])
		}
	}
}

func TestCaptureRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.trcap")
	recs := genRecords(5000, 101)
	// A jump in seqs (a recording resumed later) starts a new block.
	recs = append(recs, genRecords(10, 9001)...)
	writeCapture(t, path, recs, WriterOptions{Source: "test", Created: 42, FlushRecords: 700, FlushInterval: time.Hour}, true)

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Indexed() || r.Damage() != nil {
		t.Fatalf("indexed %v damage %v", r.Indexed(), r.Damage())
	}
	if h := r.Header(); h.Version != Version || h.Created != 42 || h.Source != "test" {
		t.Fatalf("header %+v", h)
	}
	if r.Records() != uint64(len(recs)) || r.FirstSeq() != 101 || r.LastSeq() != 9010 {
		t.Fatalf("records %d first %d last %d", r.Records(), r.FirstSeq(), r.LastSeq())
	}
	if n := len(r.Blocks()); n != 9 { // ceil(5000/700) = 8, plus the jump
		t.Fatalf("%d blocks", n)
	}
	got, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs)
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}

	// Seeks land on the first record at or after the bound.
	c := r.Cursor()
	if err := c.SeekSeq(3333); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := c.Next(); seqOf(f) != 3333 {
		t.Fatalf("SeekSeq(3333) gave seq %d", seqOf(f))
	}
	if err := c.SeekSeq(6000); err != nil { // in the hole: next is 9001
		t.Fatal(err)
	}
	if _, f, _ := c.Next(); seqOf(f) != 9001 {
		t.Fatalf("SeekSeq(6000) gave seq %d", seqOf(f))
	}
	if err := c.SeekTime(recs[1000].recv); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := c.Next(); seqOf(f) != 101+999 { // record 999 shares record 1000's receive time
		t.Fatalf("SeekTime gave seq %d", seqOf(f))
	}
	if err := c.SeekSeq(1 << 40); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("past the end: %v", err)
	}
}

func seqOf(frame []byte) uint64 {
	if len(frame) < 10 {
		return 0
	}
	return binary.LittleEndian.Uint64(frame[2:])
}

// TestCaptureIndexRebuild: a capture whose writer never closed (crash
// between blocks) has no index; Open rebuilds it by scanning.
func TestCaptureIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	recs := genRecords(3000, 1)
	path := filepath.Join(dir, "open.trcap")
	writeCapture(t, path, recs, WriterOptions{FlushRecords: 256}, false)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Indexed() || r.Damage() != nil {
		t.Fatalf("indexed %v damage %v", r.Indexed(), r.Damage())
	}
	got, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, got, recs)

	// A clean capture whose trailer was lost (cut inside it): the index is
	// rebuilt, nothing is damaged.
	path2 := filepath.Join(dir, "cut.trcap")
	writeCapture(t, path2, recs, WriterOptions{FlushRecords: 256}, true)
	st, _ := os.Stat(path2)
	if err := os.Truncate(path2, st.Size()-5); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(path2)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Indexed() || r2.Damage() != nil || r2.Records() != 3000 {
		t.Fatalf("indexed %v damage %v records %d", r2.Indexed(), r2.Damage(), r2.Records())
	}
}

// TestCaptureTornTail truncates a capture at random points: the blocks
// before the cut stay readable and the damage names the torn block's offset.
func TestCaptureTornTail(t *testing.T) {
	dir := t.TempDir()
	recs := genRecords(2000, 1)
	full := filepath.Join(dir, "full.trcap")
	writeCapture(t, full, recs, WriterOptions{FlushRecords: 100, FlushInterval: time.Hour}, false)
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Open(full)
	if err != nil {
		t.Fatal(err)
	}
	blocks := ref.Blocks()
	hdrSize := ref.Header().Size
	ref.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		cut := hdrSize + rng.Int64N(int64(len(data))-hdrSize)
		if i == 0 {
			cut = blocks[3].Offset + 10 // inside a block header
		}
		path := filepath.Join(dir, "torn.trcap")
		if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		// Whole blocks before the cut survive.
		var whole int
		for _, b := range blocks {
			if b.Offset+blockHeaderSize+int64(b.Size) <= cut {
				whole++
			}
		}
		if len(r.Blocks()) != whole {
			t.Fatalf("cut at %d: %d blocks readable, want %d", cut, len(r.Blocks()), whole)
		}
		got, err := readAll(t, r)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		sameRecords(t, got, recs[:whole*100])
		d := r.Damage()
		tornAt := hdrSize
		if whole > 0 {
			tornAt = blocks[whole-1].Offset + blockHeaderSize + int64(blocks[whole-1].Size)
		}
		var ce *CorruptError
		if cut == tornAt {
			if d != nil {
				t.Fatalf("cut at a block boundary %d: damage %v", cut, d)
			}
		} else if !errors.As(d, &ce) || ce.Offset != tornAt || !strings.Contains(d.Error(), "byte offset") {
			t.Fatalf("cut at %d: damage %v, want one at offset %d", cut, d, tornAt)
		}
		r.Close()
	}

	// Cut inside the file header: refused, naming the offset.
	path := filepath.Join(dir, "hdr.trcap")
	os.WriteFile(path, data[:10], 0o644)
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "byte offset") {
		t.Fatalf("header cut: %v", err)
	}
}

// TestCaptureCorruptByte flips one payload byte: reading reports a CRC
// mismatch at the block's offset, with or without an index.
func TestCaptureCorruptByte(t *testing.T) {
	dir := t.TempDir()
	recs := genRecords(1000, 1)
	for _, indexed := range []bool{true, false} {
		path := filepath.Join(dir, "c.trcap")
		os.Remove(path)
		writeCapture(t, path, recs, WriterOptions{FlushRecords: 100, FlushInterval: time.Hour}, indexed)
		r, _ := Open(path)
		b := r.Blocks()[4]
		r.Close()
		data, _ := os.ReadFile(path)
		data[b.Offset+blockHeaderSize+77] ^= 0x40
		os.WriteFile(path, data, 0o644)

		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var ce *CorruptError
		if indexed {
			_, err = readAll(t, r)
			if err2 := r.Verify(); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Verify %v, read %v", err2, err)
			}
		} else {
			err = r.Damage()
			if len(r.Blocks()) != 4 {
				t.Fatalf("%d blocks readable, want 4", len(r.Blocks()))
			}
		}
		if !errors.As(err, &ce) || ce.Offset != b.Offset || !strings.Contains(err.Error(), "CRC32C mismatch") {
			t.Fatalf("indexed=%v: err %v, want a CRC error at offset %d", indexed, err, b.Offset)
		}
		t.Logf("indexed=%v: %v", indexed, err)
		r.Close()

		// A corrupt block header length is caught by the header's CRC.
		data[b.Offset+blockHeaderSize+77] ^= 0x40
		data[b.Offset+5] ^= 0x01
		os.WriteFile(path, data, 0o644)
		r, _ = Open(path)
		if indexed {
			_, err = readAll(t, r)
		} else {
			err = r.Damage()
		}
		if !errors.As(err, &ce) || ce.Offset != b.Offset || ce.What != "block header" {
			t.Fatalf("indexed=%v: header err %v", indexed, err)
		}
		r.Close()
	}
}

func TestCaptureBadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.trcap")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	path := filepath.Join(dir, "v3.trcap")
	writeCapture(t, path, genRecords(10, 1), WriterOptions{}, true)
	data, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint16(data[5:], 3)
	os.WriteFile(path, data, 0o644)
	_, err := Open(path)
	var ve *VersionError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "capture format version 3, this tickrelay reads 1") {
		t.Fatalf("v3: %v", err)
	}
	os.WriteFile(path, []byte("hello, this is not a capture"), 0o644)
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a tickrelay capture") {
		t.Fatalf("text: %v", err)
	}
	// Create never overwrites.
	if _, err := Create(path, WriterOptions{}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over a file: %v", err)
	}
}

// TestCaptureVersion1: a capture written before epochs (format 1: the same
// layout, seqs for positions) is read as epoch 0, every record intact.
func TestCaptureVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.trcap")
	recs := genRecords(300, 1)
	writeCapture(t, path, recs, WriterOptions{FlushRecords: 64}, true)
	data, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint16(data[5:], 1)
	end := fileHeaderFixed + int(binary.LittleEndian.Uint16(data[15:]))
	binary.LittleEndian.PutUint32(data[end:], crc(data[:end]))
	os.WriteFile(path, data, 0o644)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Header().Version != 1 || fmt.Sprint(r.Epochs()) != "[{0 1 300 300}]" {
		t.Fatalf("version %d, epochs %v", r.Header().Version, r.Epochs())
	}
	got, err := readAll(t, r)
	if err != nil || len(got) != len(recs) || !bytes.Equal(got[299].frame, recs[299].frame) {
		t.Fatalf("read %d records: %v", len(got), err)
	}
}
