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
	// FirstSeq is the seq of the first record Next will return (0 if none),
	// in FirstEpoch.
	FirstSeq() uint64
	FirstEpoch() uint32
	// Epoch is the epoch of the record Next returned last: a record of a
	// later epoch than the one before starts it (a Sequence Reset).
	Epoch() uint32
	// Total is the number of records selected (an estimate for a time
	// range in a capture), 0 if unknown; for progress only.
	Total() uint64
	// Close releases the source.
	Close() error
}

// Select picks part of a recording: records of Epoch with FromSeq <= seq
// <= ToSeq and FromTime <= t <= ToTime (t: receive time in a capture,
// exch_send in Postgres). Zero bounds are open.
type Select struct {
	FromSeq, ToSeq   uint64
	FromTime, ToTime int64
	// Epoch picks the trading session played (0: from Postgres the newest
	// there; from a capture every epoch, when FromSeq and ToSeq are 0, else
	// its only one); its seqs are the ones FromSeq and ToSeq bound.
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
	r      *Reader
	c      *Cursor
	sel    Select
	total  uint64
	first  uint64 // seq
	epoch0 uint32 // of the first record
	done   bool
}

// NewCaptureSource selects from an open capture; Close closes r.
func NewCaptureSource(r *Reader, sel Select) (*CaptureSource, error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	// The selection's seqs become the capture's positions.
	epochs := r.Epochs()
	switch e := sel.Epoch; {
	case e == 0 && len(epochs) > 1 && (sel.FromSeq != 0 || sel.ToSeq != 0):
		return nil, fmt.Errorf("replay: the capture holds %d epochs (%d..%d): a seq range needs an epoch", len(epochs), epochs[0].Epoch, epochs[len(epochs)-1].Epoch)
	case e == 0 && len(epochs) == 1:
		sel.Epoch = epochs[0].Epoch
	}
	if sel.Epoch != 0 || len(epochs) == 1 {
		sel.FromSeq, sel.ToSeq = wire.Pos(sel.Epoch, max(sel.FromSeq, 1)), wire.Pos(sel.Epoch, min(sel.toSeq(), wire.MaxSeq))
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
		s.epoch0 = s.Epoch()
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
	if s.c.seq-1 > s.sel.toSeq() || t > s.sel.toTime() {
		s.done = true
		return 0, nil, io.EOF
	}
	return t, f, nil
}

// Total implements Source.
func (s *CaptureSource) Total() uint64 { return s.total }

// Epoch implements Source: the epoch of the record Next returned last.
func (s *CaptureSource) Epoch() uint32 { return wire.PosEpoch(s.c.seq - 1) }

// FirstEpoch implements Source.
func (s *CaptureSource) FirstEpoch() uint32 { return s.epoch0 }

// Close implements Source.
func (s *CaptureSource) Close() error { return s.r.Close() }
