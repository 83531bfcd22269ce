package replay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"tickrelay/wire"
)

// Source yields recorded frames in seq order for a Server.
type Source interface {
	// Next returns the next record: its pacing time (ns: the receive time
	// in a capture, exch_send in Postgres) and its feed frame (length
	// prefix and body), valid until the next call. io.EOF ends the stream.
	Next(ctx context.Context) (t int64, frame []byte, err error)
	// Rewind starts the stream over (for Config.Loop).
	Rewind(ctx context.Context) error
	// FirstSeq is the seq of the first record Next will return (0 if none).
	FirstSeq() uint64
	// Total is the number of records selected (an estimate for a time
	// range in a capture), 0 if unknown; for progress only.
	Total() uint64
	// Close releases the source.
	Close() error
}

// Select picks part of a recording: records with FromSeq <= seq <= ToSeq
// and FromTime <= t <= ToTime (t: receive time in a capture, exch_send in
// Postgres). Zero bounds are open.
type Select struct {
	FromSeq, ToSeq   uint64
	FromTime, ToTime int64
	// Epoch picks the trading session played from a Postgres backup
	// (0: the newest there); its seqs are the ones FromSeq and ToSeq bound.
	Epoch uint32
}

func (s Select) toSeq() uint64 {
	if s.ToSeq == 0 {
		return math.MaxUint64
	}
	return s.ToSeq
}

func (s Select) toTime() int64 {
	if s.ToTime == 0 {
		return math.MaxInt64
	}
	return s.ToTime
}

// Validate checks the bounds.
func (s Select) Validate() error {
	switch {
	case s.ToSeq != 0 && s.ToSeq < s.FromSeq:
		return fmt.Errorf("replay: to-seq %d < from-seq %d", s.ToSeq, s.FromSeq)
	case s.ToTime != 0 && s.ToTime < s.FromTime:
		return fmt.Errorf("replay: to-time %d < from-time %d", s.ToTime, s.FromTime)
	}
	return nil
}

// CaptureSource plays the selected part of a capture.
type CaptureSource struct {
	r     *Reader
	c     *Cursor
	sel   Select
	total uint64
	first uint64
	done  bool
}

// NewCaptureSource selects from an open capture; Close closes r.
func NewCaptureSource(r *Reader, sel Select) (*CaptureSource, error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	s := &CaptureSource{r: r, c: r.Cursor(), sel: sel}
	for _, b := range r.blocks {
		lo, hi := max(b.FirstSeq, sel.FromSeq), min(b.LastSeq(), sel.toSeq())
		if lo > hi || b.LastRecv < sel.FromTime || b.FirstRecv > sel.toTime() {
			continue
		}
		s.total += hi - lo + 1
	}
	if err := s.Rewind(context.Background()); err != nil {
		return nil, err
	}
	if _, f, err := s.Next(context.Background()); err == nil {
		s.first = binary.LittleEndian.Uint64(f[wire.FeedLenSize:])
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	return s, s.Rewind(context.Background())
}

// FirstSeq implements Source.
func (s *CaptureSource) FirstSeq() uint64 { return s.first }

// Rewind implements Source.
func (s *CaptureSource) Rewind(context.Context) error {
	s.done = false
	if err := s.c.SeekSeq(s.sel.FromSeq); err != nil {
		return err
	}
	if s.sel.FromTime == 0 {
		return nil
	}
	// The later of the two starts; a cursor left with nothing is at the end.
	byTime := s.r.Cursor()
	if err := byTime.SeekTime(s.sel.FromTime); err != nil {
		return err
	}
	switch {
	case byTime.left == 0 || s.c.left == 0:
		s.done = true
	case byTime.seq > s.c.seq:
		s.c = byTime
	}
	return nil
}

// Next implements Source.
func (s *CaptureSource) Next(context.Context) (int64, []byte, error) {
	if s.done {
		return 0, nil, io.EOF
	}
	t, f, err := s.c.Next()
	if err != nil {
		return 0, nil, err
	}
	if binary.LittleEndian.Uint64(f[wire.FeedLenSize:]) > s.sel.toSeq() || t > s.sel.toTime() {
		s.done = true
		return 0, nil, io.EOF
	}
	return t, f, nil
}

// Total implements Source.
func (s *CaptureSource) Total() uint64 { return s.total }

// Close implements Source.
func (s *CaptureSource) Close() error { return s.r.Close() }
