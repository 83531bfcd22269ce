package wire

import (
	"errors"
	"fmt"
	"io"
)

// FeedReader reads feed frames from a connection into one reused buffer:
// Fill reads once, Next hands out the complete frames. It is the client side
// of a feed session (the root and the recorder), and allocates nothing after
// NewFeedReader.
type FeedReader struct {
	buf    []byte
	rd, wr int
}

// NewFeedReader returns a reader with a buffer of size bytes (at least one
// maximal frame).
func NewFeedReader(size int) *FeedReader {
	return &FeedReader{buf: make([]byte, max(size, 2*(FeedLenSize+MaxFeedBody)))}
}

// Reset drops buffered bytes (a new connection).
func (r *FeedReader) Reset() { r.rd, r.wr = 0, 0 }

// Buffered is the count of bytes read but not yet handed out.
func (r *FeedReader) Buffered() int { return r.wr - r.rd }

// Fill compacts the buffer when a maximal frame might not fit and reads
// once. A read of nothing without an error is io.ErrNoProgress.
func (r *FeedReader) Fill(conn io.Reader) error {
	if r.rd == r.wr {
		r.rd, r.wr = 0, 0
	} else if len(r.buf)-r.wr < FeedLenSize+MaxFeedBody {
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

// Next returns the next complete frame (length prefix included), its body
// and the body's headers (parsed once, here), the bytes valid until the next
// Fill; ErrShort when it needs a Fill. A malformed frame is returned as the
// wire error and consumes nothing.
func (r *FeedReader) Next() (frame, body []byte, h FeedHeader, err error) {
	body, h, n, err := nextFeedFrame(r.buf[r.rd:r.wr])
	if err != nil {
		return nil, nil, h, err
	}
	frame = r.buf[r.rd : r.rd+n]
	r.rd += n
	return frame, body, h, nil
}

// ReadFrame returns the next frame's body, reading conn as needed: a
// blocking Next for the simple side of a session (logons, tests). The body
// is valid until the next call; a malformed frame is its wire error, a read
// failure is returned as it is.
func (r *FeedReader) ReadFrame(conn io.Reader) ([]byte, error) {
	body, _, err := r.readFrame(conn)
	return body, err
}

// readFrame is ReadFrame with the body's headers.
func (r *FeedReader) readFrame(conn io.Reader) ([]byte, FeedHeader, error) {
	for {
		_, body, h, err := r.Next()
		if !errors.Is(err, ErrShort) {
			return body, h, err
		}
		if err := r.Fill(conn); err != nil {
			return nil, FeedHeader{}, err
		}
	}
}

// ErrNotLogonReply means the exchange sent something other than a logon
// reply (or heartbeat) first.
var ErrNotLogonReply = errors.New("frame before the logon reply")

// ReadLogonReply reads frames until the logon reply, skipping heartbeats.
// A malformed frame is returned as its wire error, any other frame as
// ErrNotLogonReply, a read failure wrapped.
func (r *FeedReader) ReadLogonReply(conn io.Reader) (LogonReply, error) {
	for {
		body, h, err := r.readFrame(conn)
		var werr *Error
		switch {
		case errors.As(err, &werr):
			return LogonReply{}, err
		case err != nil:
			return LogonReply{}, fmt.Errorf("logon reply: %w", err)
		}
		switch h.MsgType {
		case TypeLogonReply:
			return ParseLogonReply(body)
		case TypeHeartbeat:
			continue
		}
		return LogonReply{}, fmt.Errorf("%w: type %d seq %d", ErrNotLogonReply, h.MsgType, h.Seq)
	}
}
