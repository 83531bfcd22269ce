package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"tickrelay/wire"
)

// RecordConfig configures a Recorder.
type RecordConfig struct {
	Exchange       string // exchange feed host:port
	User, Password string
	Out            string // capture file to create (an existing file is never overwritten)
	FromSeq        uint64 // first seq wanted; 0: from the live edge
	Max            uint64 // stop after this many frames (0: until ctx ends)

	FlushRecords  int           // records per block at most (4096)
	FlushInterval time.Duration // a block is written at the latest this long after its first record (100 ms)

	DialTimeout            time.Duration // dial and logon (5 s)
	IdleTimeout            time.Duration // reconnect when nothing (not even a heartbeat) arrives this long (10 s)
	MinBackoff, MaxBackoff time.Duration // reconnect delay bounds (100 ms, 5 s)

	Now    func() int64 // receive-time clock, ns (time.Now)
	Logger *slog.Logger
}

// DefaultRecordConfig is the `tickrelay replay record` default; Out must be set.
func DefaultRecordConfig() RecordConfig {
	return RecordConfig{
		Exchange: "127.0.0.1:9000", User: "tickrelay", Password: "tickrelay",
		FlushRecords: 4096, FlushInterval: 100 * time.Millisecond,
		DialTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second,
	}
}

// Validate names the first bad field.
func (c RecordConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Exchange); err != nil {
		return fmt.Errorf("replay record: Exchange %q: %w", c.Exchange, err)
	}
	switch {
	case c.Out == "":
		return errors.New("replay record: Out: required")
	case c.User == "" || len(c.User) > 16:
		return errors.New("replay record: User: want 1..16 bytes")
	case len(c.Password) > 16:
		return errors.New("replay record: Password: at most 16 bytes")
	case c.FlushRecords <= 0:
		return fmt.Errorf("replay record: FlushRecords %d: must be > 0", c.FlushRecords)
	case c.FlushInterval <= 0:
		return fmt.Errorf("replay record: FlushInterval %v: must be > 0", c.FlushInterval)
	case c.DialTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("replay record: DialTimeout and IdleTimeout must be > 0")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("replay record: need 0 < MinBackoff <= MaxBackoff")
	}
	return nil
}

// Recorder logs in to an exchange like a root and writes every data frame
// it receives, with its receive time, to a capture. A sequence gap or a
// dropped connection makes it log in again from last+1, so the capture is
// contiguous. Session frames (logon replies, heartbeats) are not recorded.
type Recorder struct {
	cfg  RecordConfig
	log  *slog.Logger
	now  func() int64
	w    *Writer
	last uint64 // position (wire.Pos) of the last record, or where the next epoch starts
	in   *wire.FeedReader

	frames, bytes, seq atomic.Uint64
	startNs            atomic.Int64
	reconnects         atomic.Uint64
}

// errGap ends a session that skipped seqs; the next logs in from last+1.
var errGap = errors.New("sequence gap")

// errDone ends recording: Max frames recorded.
var errDone = errors.New("max frames recorded")

// NewRecorder validates cfg; it creates and dials nothing yet.
func NewRecorder(cfg RecordConfig) (*Recorder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Recorder{cfg: cfg, log: cfg.Logger, now: cfg.Now, in: wire.NewFeedReader(256 << 10)}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "replay-record", "exchange", cfg.Exchange)
	if r.now == nil {
		r.now = func() int64 { return time.Now().UnixNano() }
	}
	return r, nil
}

// Progress reports how much was recorded (Total is Max).
func (r *Recorder) Progress() Progress {
	p := Progress{Frames: r.frames.Load(), Bytes: r.bytes.Load(), Seq: r.seq.Load(), Total: r.cfg.Max}
	if st := r.startNs.Load(); st != 0 {
		p.Elapsed = time.Duration(time.Now().UnixNano() - st)
	}
	return p
}

// Reconnects counts the sessions after the first.
func (r *Recorder) Reconnects() uint64 { return r.reconnects.Load() }

// Run creates the capture and records until Max frames or until ctx ends,
// then closes the capture cleanly (index and trailer). A refused logon
// (bad auth, or the wanted seq no longer held) ends it with an error; the
// frames recorded so far stay in a valid capture.
func (r *Recorder) Run(ctx context.Context) (err error) {
	src := fmt.Sprintf("exchange %s user %s from-seq %d", r.cfg.Exchange, r.cfg.User, r.cfg.FromSeq)
	w, err := Create(r.cfg.Out, WriterOptions{Source: src, Created: r.now(),
		FlushRecords: r.cfg.FlushRecords, FlushInterval: r.cfg.FlushInterval})
	if err != nil {
		return err
	}
	r.w = w
	defer func() {
		if cerr := w.Close(); err == nil && cerr != nil {
			err = cerr
		}
		r.log.Info("recording closed", "frames", w.Records(), "epoch", wire.PosEpoch(w.LastSeq()), "last_seq", wire.PosSeq(w.LastSeq()), "bytes", w.Size(), "path", r.cfg.Out)
	}()
	r.startNs.Store(time.Now().UnixNano())
	backoff := r.cfg.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			r.reconnects.Add(1)
			d := backoff/2 + rand.N(backoff/2+1)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		before := r.last
		err := r.once(ctx)
		switch {
		case errors.Is(err, errDone):
			return nil
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errFatal):
			return err
		}
		r.log.Warn("exchange session ended; logging in again", "err", err, "epoch", wire.PosEpoch(r.last), "last_seq", wire.PosSeq(r.last))
		if r.last > before {
			backoff = r.cfg.MinBackoff
		} else if backoff *= 2; backoff > r.cfg.MaxBackoff {
			backoff = r.cfg.MaxBackoff
		}
	}
}

var errFatal = errors.New("recording cannot continue")

// once runs one session: dial, logon from last+1 (or FromSeq), read.
func (r *Recorder) once(ctx context.Context) error {
	d := net.Dialer{Timeout: r.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", r.cfg.Exchange)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r.in.Reset()
	start, epoch := r.cfg.FromSeq, wire.PosEpoch(r.last)
	if r.last > 0 {
		start = wire.PosSeq(r.last) + 1
	}
	conn.SetDeadline(time.Now().Add(r.cfg.DialTimeout))
	if _, err := conn.Write(wire.AppendLogon(nil, wire.Logon{User: r.cfg.User, Password: r.cfg.Password, StartSeq: start, Epoch: epoch})); err != nil {
		return fmt.Errorf("logon: %w", err)
	}
	reply, err := r.in.ReadLogonReply(conn)
	if err != nil {
		return err
	}
	if served := reply.Status == wire.LogonOK || reply.Status == wire.LogonUnavailable; served && r.last > 0 && reply.Epoch != epoch {
		if reply.Epoch < epoch {
			return fmt.Errorf("%w: the exchange serves epoch %d, older than the recording's %d", errFatal, reply.Epoch, epoch)
		}
		start = 0 // a later epoch: from wherever the exchange starts it
	}
	switch {
	case reply.Status == wire.LogonBadAuth || reply.Status == wire.LogonMalformed:
		return fmt.Errorf("%w: logon refused (status %d): %s", errFatal, reply.Status, reply.Reason)
	case reply.Status == wire.LogonUnavailable && start != 0 && reply.NextSeq > start:
		return fmt.Errorf("%w: the exchange no longer holds seq %d (oldest %d): %s", errFatal, start, reply.NextSeq, reply.Reason)
	case reply.Status != wire.LogonOK:
		return fmt.Errorf("logon refused (status %d, next seq %d): %s", reply.Status, reply.NextSeq, reply.Reason)
	case start != 0 && reply.NextSeq != start:
		return fmt.Errorf("%w: asked for seq %d, exchange offers %d", errFatal, start, reply.NextSeq)
	}
	if err := r.w.SetEpoch(reply.Epoch); err != nil {
		return fmt.Errorf("%w: %v", errFatal, err)
	}
	if r.last == 0 || wire.PosEpoch(r.last) != reply.Epoch {
		r.last = wire.Pos(reply.Epoch, reply.NextSeq-1)
	}
	r.log.Info("exchange session up", "epoch", reply.Epoch, "start_seq", reply.NextSeq)
	conn.SetWriteDeadline(time.Time{})
	idleSince := time.Now()
	for {
		if err := r.apply(); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(r.cfg.FlushInterval))
		err := r.in.Fill(conn)
		if err == nil {
			idleSince = time.Now()
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if werr := r.w.Tick(r.now()); werr != nil {
				return fmt.Errorf("%w: %v", errFatal, werr)
			}
			if time.Since(idleSince) >= r.cfg.IdleTimeout {
				return fmt.Errorf("exchange idle for %v", r.cfg.IdleTimeout)
			}
			continue
		}
		if errors.Is(err, io.EOF) && r.in.Buffered() > 0 {
			return fmt.Errorf("connection closed with %d bytes of a partial frame", r.in.Buffered())
		}
		return err
	}
}

// apply records every complete frame in the buffer, stamped with one
// receive time (the bytes arrived together, as the root stamps them).
func (r *Recorder) apply() error {
	recv := r.now()
	for {
		frame, body, h, err := r.in.Next()
		if err != nil {
			if errors.Is(err, wire.ErrShort) {
				return nil
			}
			return fmt.Errorf("bad frame from exchange after seq %d: %w", r.last, err)
		}
		if h.Seq == 0 {
			switch h.MsgType {
			case wire.TypeHeartbeat:
				if next := wire.HeartbeatNextSeq(body); next > wire.PosSeq(r.last)+1 {
					return fmt.Errorf("%w: heartbeat announces next seq %d, last recorded %d", errGap, next, wire.PosSeq(r.last))
				}
			case wire.TypeSequenceReset: // a new epoch: recorded as its records' positions
				rs := wire.ParseSequenceReset(body)
				if err := rs.Follows(wire.PosEpoch(r.last), wire.PosSeq(r.last)); err != nil {
					return fmt.Errorf("bad frame from exchange: %w", err)
				}
				if err := r.w.SetEpoch(rs.Epoch); err != nil {
					return fmt.Errorf("%w: %v", errFatal, err)
				}
				r.log.Info("exchange started a new epoch", "epoch", rs.Epoch, "next_seq", rs.NextSeq)
				r.last = wire.Pos(rs.Epoch, rs.NextSeq-1)
			}
			continue
		}
		seq := wire.Pos(wire.PosEpoch(r.last), h.Seq)
		switch {
		case h.Seq > wire.MaxSeq:
			return fmt.Errorf("bad frame from exchange: seq %d beyond an epoch's %d", h.Seq, uint64(wire.MaxSeq))
		case seq <= r.last:
			continue // duplicate
		case seq != r.last+1:
			return fmt.Errorf("%w: got seq %d, want %d", errGap, h.Seq, wire.PosSeq(r.last)+1)
		}
		if err := r.w.Append(recv, frame); err != nil {
			return fmt.Errorf("%w: %v", errFatal, err)
		}
		r.last = seq
		r.frames.Add(1)
		r.bytes.Add(uint64(len(frame)))
		r.seq.Store(h.Seq)
		if r.cfg.Max > 0 && r.frames.Load() >= r.cfg.Max {
			return errDone
		}
	}
}
