// Package client is a small client of a tickrelay child: dial, send SUB,
// UNSUB, RESUME, PING and TIME, and read lines, decoding data frames without
// allocating in steady state. A Client is used by one reader goroutine;
// commands may be sent from any goroutine.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"tickrelay/wire"
)

// Client is one connection to a child.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	part []byte // the start of a line a failed read (a deadline) cut off
	wmu  sync.Mutex
	wbuf []byte
	ev   Event
}

// Event is one line from the child. It is reused by the next call to Next:
// copy what you keep.
type Event struct {
	Kind   wire.LineKind
	Line   []byte      // the raw line without its newline
	Recv   int64       // client receive time, ns since the Unix epoch
	Seq    uint64      // LineFrame: the frame's seq
	Stamps wire.Stamps // LineFrame: per-hop stamps
	Msg    wire.Msg    // LineFrame: the decoded message
}

// OK parses a LineOK event: verb, symbol (SUB, UNSUB) and seq (SUB, RESUME).
func (e *Event) OK() (verb, sym string, seq uint64, err error) { return wire.ParseOK(e.Line) }

// Epoch is the epoch an "OK SUB" or "OK RESUME" event names (0: none).
func (e *Event) Epoch() uint32 { return wire.OKEpoch(e.Line) }

// Reset parses a LineReset event: the new epoch and its first seq, the
// epoch before it and where that ended.
func (e *Event) Reset() (wire.ResetLine, error) { return wire.ParseResetLine(e.Line) }

// Err parses a LineErr event into its code and reason.
func (e *Event) Err() (code, reason string) {
	rest := string(e.Line[min(len(e.Line), 4):])
	for i := 0; i < len(rest); i++ {
		if rest[i] == ' ' {
			return rest[:i], rest[i+1:]
		}
	}
	return rest, ""
}

// Time parses a LineTime event: the client's t0 and the child's t1, t2.
func (e *Event) Time() (t0, t1, t2 int64, err error) { return wire.ParseTimeLine(e.Line) }

// Dial connects to the child at addr.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return DialWindow(ctx, addr, 0)
}

// DialWindow connects to the child at addr with a receive buffer of
// rcvbuf bytes (SO_RCVBUF, set before the handshake so the TCP window
// stays that small; 0: the kernel's autotuning). A small one makes a
// client that stops reading look stalled to the child at once.
func DialWindow(ctx context.Context, addr string, rcvbuf int) (*Client, error) {
	conn, err := DialConn(ctx, addr, rcvbuf)
	if err != nil {
		return nil, err
	}
	return New(conn), nil
}

// DialConn is DialWindow's bare connection, for callers that write raw lines.
func DialConn(ctx context.Context, addr string, rcvbuf int) (net.Conn, error) {
	var d net.Dialer
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// New wraps an established connection.
func New(conn net.Conn) *Client {
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, 256<<10)}
}

// Conn returns the underlying connection (for deadlines).
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Sub subscribes to symbols ("*" for all): the child answers each with its
// image, then "OK SUB sym seq", then every update with a greater seq.
func (c *Client) Sub(syms ...string) error { return c.symCmd(wire.CmdSub, "", syms) }

// Unsub ends subscriptions.
func (c *Client) Unsub(syms ...string) error { return c.symCmd(wire.CmdUnsub, "", syms) }

// Resume asks for every update of syms from seq on (no image), after
// "OK RESUME seq"; "ERR GONE" if the child no longer holds seq.
func (c *Client) Resume(seq uint64, syms ...string) error {
	if len(syms) == 0 {
		return errors.New("client: RESUME needs at least one symbol")
	}
	// One line: the history replay must cover every symbol at once.
	return c.symCmd(wire.CmdResume, strconv.FormatUint(seq, 10), syms)
}

// ResumeEpoch is Resume from seq of epoch exactly: a child in another
// epoch answers ERR GONE.
func (c *Client) ResumeEpoch(epoch uint32, seq uint64, syms ...string) error {
	if len(syms) == 0 {
		return errors.New("client: RESUME needs at least one symbol")
	}
	return c.symCmd(wire.CmdResume, strconv.FormatUint(uint64(epoch), 10)+":"+strconv.FormatUint(seq, 10), syms)
}

// Ping sends PING; the child answers PONG.
func (c *Client) Ping() error { return c.send("PING\n") }

// Time sends TIME with the current time as t0; the child answers
// "TIME t0 t1 t2".
func (c *Client) Time() error {
	return c.send("TIME " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
}

// SendLine sends one raw line (a newline is added).
func (c *Client) SendLine(line string) error { return c.send(line + "\n") }

func (c *Client) send(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write([]byte(s))
	return err
}

// ErrResumeTooLong: a RESUME's symbols do not fit one line (send fewer
// per RESUME).
var ErrResumeTooLong = errors.New("client: RESUME symbols do not fit one line")

// symCmd sends verb [arg] syms..., split over lines under wire.MaxLineLen
// (RESUME must fit one line).
func (c *Client) symCmd(verb, arg string, syms []string) error {
	if len(syms) == 0 {
		return fmt.Errorf("client: %s needs at least one symbol", verb)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	start := 0
	begin := func() {
		start = len(b)
		b = append(b, verb...)
		if arg != "" {
			b = append(append(b, ' '), arg...)
		}
	}
	begin()
	n := 0
	for _, s := range syms {
		if n > 0 && len(b)-start+1+len(s)+1 > wire.MaxLineLen {
			if verb == wire.CmdResume {
				return ErrResumeTooLong
			}
			b = append(b, '\n')
			begin()
			n = 0
		}
		b = append(append(b, ' '), s...)
		n++
	}
	b = append(b, '\n')
	c.wbuf = b
	_, err := c.conn.Write(b)
	return err
}

// Next reads the next line and decodes it; data frames fill Seq, Stamps and
// Msg. The returned Event is reused by the next call. A data frame that does
// not decode is returned with Kind LineFrame and the decode error. After a
// read error such as a deadline, Next may be called again: the part of a
// line read before the error is kept.
func (c *Client) Next() (*Event, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(c.part)+len(line) > c.r.Size() {
		c.part = c.part[:0]
		return nil, fmt.Errorf("client: line over %d bytes", c.r.Size())
	}
	if err != nil {
		c.part = append(c.part, line...)
		return nil, err
	}
	if len(c.part) > 0 {
		line = append(c.part, line...)
		c.part = line[:0] // reused once the caller is done with this line
	}
	e := &c.ev
	e.Recv = time.Now().UnixNano()
	e.Line = line[:len(line)-1]
	e.Kind = wire.KindOf(e.Line)
	if e.Kind == wire.LineFrame {
		e.Seq, e.Stamps, err = wire.DecodeTextFrame(e.Line, &e.Msg)
		return e, err
	}
	return e, nil
}
