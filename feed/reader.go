package feed

import (
	"errors"
	"fmt"
	"io"

	"tickrelay/wire"
)

// FrameReader reads feed frames from a connection into one reused buffer:
// Fill reads once, Next hands out the complete frames. It is the client side
// of a feed session (the root and the recorder), and allocates nothing after
// NewFrameReader.
type FrameReader struct {
	buf    []byte
	rd, wr int
}

// NewFrameReader returns a reader with a buffer of size bytes (at least one
// maximal frame).
func NewFrameReader(size int) *FrameReader {
	return &FrameReader{buf: make([]byte, max(size, 2*(wire.FeedLenSize+wire.MaxFeedBody)))}
}

// Reset drops buffered bytes (a new connection).
func (r *FrameReader) Reset() { r.rd, r.wr = 0, 0 }

// Buffered is the count of bytes read but not yet handed out.
func (r *FrameReader) Buffered() int { return r.wr - r.rd }

// Fill compacts the buffer when a maximal frame might not fit and reads
// once. A read of nothing without an error is io.ErrNoProgress.
func (r *FrameReader) Fill(conn io.Reader) error {
	if r.rd == r.wr {
		r.rd, r.wr = 0, 0
	} else if len(r.buf)-r.wr < wire.FeedLenSize+wire.MaxFeedBody {
		r.wr = copy(r.buf, r.buf[r.rd:r.wr])
		r.rd = 0
	}
	n, err := conn.Read(r.buf[r.wr:])
	r.wr += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Next returns the next complete frame (length prefix included) and its
// body, both valid until the next Fill; wire.ErrShort when it needs a Fill.
// A malformed frame is returned as the wire error and consumes nothing.
func (r *FrameReader) Next() (frame, body []byte, err error) {
	body, n, err := wire.NextFeedFrame(r.buf[r.rd:r.wr])
	if err != nil {
		return nil, nil, err
	}
	frame = r.buf[r.rd : r.rd+n]
	r.rd += n
	return frame, body, nil
}

// ReadFrame returns the next frame's body, reading conn as needed: a
// blocking Next for the simple side of a session (logons, tests). The body
// is valid until the next call; a malformed frame is its wire error, a read
// failure is returned as it is.
func (r *FrameReader) ReadFrame(conn io.Reader) ([]byte, error) {
	for {
		_, body, err := r.Next()
		if !errors.Is(err, wire.ErrShort) {
			return body, err
		}
		if err := r.Fill(conn); err != nil {
			return nil, err
		}
	}
}

// ErrNotLogonReply means the exchange sent something other than a logon
// reply (or heartbeat) first.
var ErrNotLogonReply = errors.New("frame before the logon reply")

// ReadLogonReply reads frames until the logon reply, skipping heartbeats.
// A malformed frame is returned as its wire error, any other frame as
// ErrNotLogonReply, a read failure wrapped.
func (r *FrameReader) ReadLogonReply(conn io.Reader) (wire.LogonReply, error) {
	for {
		body, err := r.ReadFrame(conn)
		var werr *wire.Error
		switch {
		case errors.As(err, &werr):
			return wire.LogonReply{}, err
		case err != nil:
			return wire.LogonReply{}, fmt.Errorf("logon reply: %w", err)
		}
		h, _ := wire.ParseFeedBody(body)
		switch h.MsgType {
		case wire.TypeLogonReply:
			return wire.ParseLogonReply(body)
		case wire.TypeHeartbeat:
			continue
		}
		return wire.LogonReply{}, fmt.Errorf("%w: type %d seq %d", ErrNotLogonReply, h.MsgType, h.Seq)
	}
}
