package replay

import (
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"tickrelay/wire"
)

// BenchmarkServeMax plays a capture with Max (and Loop, so any b.N fits)
// into one session that reads and discards: one op is one frame delivered.
func BenchmarkServeMax(b *testing.B) {
	recs := genRecords(1<<18, 1)
	path := filepath.Join(b.TempDir(), "bench.trcap")
	writeCapture(b, path, recs, WriterOptions{FlushInterval: time.Hour}, true)
	r, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	src, _ := NewCaptureSource(r, Select{})
	b.Cleanup(func() { src.Close() })
	cfg := DefaultConfig()
	cfg.Source, cfg.Max, cfg.Loop = src, true, true
	cfg.StartOnLogon = true
	srv := startReplay(b, cfg)
	cl, rep := logon(b, srv.Addr(), "tickrelay", "tickrelay", 1)
	if rep.Status != wire.LogonOK {
		b.Fatalf("logon: %+v", rep)
	}
	buf := make([]byte, 1<<20)
	var (
		frames, nbytes int
		pend           int // bytes of a frame split across reads
		hdr            [2]byte
		nh             int // bytes of hdr held
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for frames < b.N {
		cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := cl.c.Read(buf)
		if err != nil {
			b.Fatalf("read after %d frames: %v", frames, err)
		}
		nbytes += n
		p := buf[:n]
		for len(p) > 0 {
			if pend > 0 {
				k := min(pend, len(p))
				p, pend = p[k:], pend-k
				continue
			}
			hdr[nh] = p[0]
			p, nh = p[1:], nh+1
			if nh == 2 {
				pend, nh = int(binary.LittleEndian.Uint16(hdr[:])), 0
				if binary.LittleEndian.Uint16(hdr[:]) >= wire.MinFeedBody {
					frames++
				}
			}
		}
	}
	el := time.Since(start)
	b.StopTimer()
	b.SetBytes(int64(nbytes / max(frames, 1)))
	b.ReportMetric(float64(frames)/el.Seconds(), "frames/s")
}

// BenchmarkRecord appends frames to a capture file (blocks written to the
// OS, no fsync): one op is one record.
func BenchmarkRecord(b *testing.B) {
	recs := genRecords(1<<14, 1)
	w, err := Create(filepath.Join(b.TempDir(), "rec.trcap"), WriterOptions{FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	frame := make([]byte, 0, wire.FeedLenSize+wire.MaxFeedBody)
	b.SetBytes(int64(len(recs[0].frame) + recordHeader))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rc := recs[i&(len(recs)-1)]
		frame = append(frame[:0], rc.frame...)
		binary.LittleEndian.PutUint64(frame[2:], uint64(i+1))
		if err := w.Append(rc.recv, frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCursorNext reads a capture record by record (CRC and record
// checks included): one op is one record.
func BenchmarkCursorNext(b *testing.B) {
	recs := genRecords(1<<16, 1)
	path := filepath.Join(b.TempDir(), "read.trcap")
	writeCapture(b, path, recs, WriterOptions{FlushInterval: time.Hour}, true)
	r, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c := r.Cursor()
	b.SetBytes(int64(len(recs[0].frame) + recordHeader))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := c.Next(); errors.Is(err, io.EOF) {
			c.Rewind()
		} else if err != nil {
			b.Fatal(err)
		}
	}
}
