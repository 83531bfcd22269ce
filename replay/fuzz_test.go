package replay

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"tickrelay/feed"
	"tickrelay/wire"
)

// FuzzOpenCapture feeds arbitrary bytes to the capture reader: it must
// never panic or hang, and whatever it reads must be well-formed frames in
// seq order; damage must be reported as a CorruptError or VersionError.
func FuzzOpenCapture(f *testing.F) {
	var good bytes.Buffer
	w, err := NewWriter(&good, WriterOptions{Source: "fuzz", Created: 1, FlushRecords: 3})
	if err != nil {
		f.Fatal(err)
	}
	g := feed.NewGenerator(feed.GenConfig{Seed: 1, Symbols: 4})
	var m wire.Msg
	for seq := uint64(1); seq <= 10; seq++ {
		g.Next(&m)
		frame, _ := wire.AppendMsgFrame(nil, seq, int64(seq), &m)
		if err := w.Append(int64(seq)*1000, frame); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	b := good.Bytes()
	f.Add(b)
	f.Add(b[:len(b)-40])   // no trailer: the index is rebuilt
	f.Add(b[:len(b)/2])    // torn in a block
	f.Add(b[:20])          // torn header
	f.Add([]byte("TRCAP")) // magic only
	flipped := bytes.Clone(b)
	flipped[len(flipped)/3] ^= 0x40
	f.Add(flipped)

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.trcap")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			var ce *CorruptError
			var ve *VersionError
			if !errors.As(err, &ce) && !errors.As(err, &ve) {
				t.Fatalf("Open: unexpected error type %T: %v", err, err)
			}
			return
		}
		defer r.Close()
		c := r.Cursor()
		var last uint64
		for n := 0; ; n++ {
			_, frame, err := c.Next()
			if err != nil {
				break // EOF or damage, both fine
			}
			body, used, err := wire.NextFeedFrame(frame)
			if err != nil || used != len(frame) {
				t.Fatalf("record %d is not one feed frame: %v", n, err)
			}
			h, _ := wire.ParseFeedBody(body)
			if last != 0 && h.Seq <= last {
				t.Fatalf("seq %d after %d", h.Seq, last)
			}
			last = h.Seq
		}
	})
}
