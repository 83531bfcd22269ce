package harness

import (
	"bytes"
	"errors"

	"tickrelay/wire"
)

// errShort means the buffer holds no complete unit yet; nothing was consumed.
var errShort = errors.New("short")

// errProto is a protocol violation; the connection is dropped.
var errProto = errors.New("protocol error")

// stampsLen is the "t=" value of a text frame: five fixed-width stamps.
const stampsLen = 5*wire.StampWidth + 4

// FrameStamps pulls the seq and the five stamps out of one client text frame
// (without its newline) by position, without decoding the message: the seq
// is the second word, the stamps are the last stampsLen bytes after "t=".
// ok is false when the frame has no stamps field (not a data frame).
func FrameStamps(frame []byte) (seq uint64, st wire.Stamps, ok bool) {
	n := len(frame)
	if n < stampsLen+2+6 || frame[n-stampsLen-2] != 't' || frame[n-stampsLen-1] != '=' {
		return 0, st, false
	}
	t := frame[n-stampsLen:]
	var v [5]int64
	for i := range v {
		var x int64
		for _, c := range t[i*(wire.StampWidth+1) : i*(wire.StampWidth+1)+wire.StampWidth] {
			if c < '0' || c > '9' {
				return 0, st, false
			}
			x = x*10 + int64(c-'0')
		}
		if x < 0 { // 19 digits overflowed
			return 0, st, false
		}
		v[i] = x
	}
	// "<type> <seq> ": type is two letters.
	if frame[2] != ' ' {
		return 0, st, false
	}
	for _, c := range frame[3:] {
		if c == ' ' {
			break
		}
		if c < '0' || c > '9' {
			return 0, st, false
		}
		seq = seq*10 + uint64(c-'0')
	}
	return seq, wire.Stamps{ExchSend: v[0], RootRecv: v[1], RootSend: v[2], ChildRecv: v[3], ChildSend: v[4]}, true
}

// natsMsg is one parsed unit of the NATS server protocol.
type natsKind uint8

const (
	natsMsg natsKind = iota + 1
	natsPing
	natsPong
	natsOK
	natsInfo
	natsErr
)

// nextNATS parses one server protocol unit at the start of buf: for MSG,
// payload is the message payload. n is the bytes used.
func nextNATS(buf []byte) (kind natsKind, payload []byte, n int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > 64<<10 {
			return 0, nil, 0, errProto
		}
		return 0, nil, 0, errShort
	}
	line := buf[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	switch {
	case bytes.HasPrefix(line, []byte("MSG ")):
		// MSG <subject> <sid> [reply-to] <#bytes>
		j := bytes.LastIndexByte(line, ' ')
		size := 0
		for _, c := range line[j+1:] {
			if c < '0' || c > '9' {
				return 0, nil, 0, errProto
			}
			size = size*10 + int(c-'0')
			if size > 64<<20 {
				return 0, nil, 0, errProto
			}
		}
		end := i + 1 + size + 2
		if len(buf) < end {
			return 0, nil, 0, errShort
		}
		return natsMsg, buf[i+1 : i+1+size], end, nil
	case string(line) == "PING":
		return natsPing, nil, i + 1, nil
	case string(line) == "PONG":
		return natsPong, nil, i + 1, nil
	case string(line) == "+OK":
		return natsOK, nil, i + 1, nil
	case bytes.HasPrefix(line, []byte("INFO ")):
		return natsInfo, nil, i + 1, nil
	case bytes.HasPrefix(line, []byte("-ERR")):
		return natsErr, line, i + 1, nil
	}
	return 0, nil, 0, errProto
}

// respKind is what a pushed RESP array said.
type respKind uint8

const (
	respMessage   respKind = iota + 1 // ["message", channel, payload]
	respSubscribe                     // ["subscribe", channel, count]
	respOther
)

// nextRESP parses one RESP2 pushed array (or a simple reply) at the start of
// buf. For a message it returns the payload.
func nextRESP(buf []byte) (kind respKind, payload []byte, n int, err error) {
	if len(buf) == 0 {
		return 0, nil, 0, errShort
	}
	switch buf[0] {
	case '+', '-', ':':
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return 0, nil, 0, errShort
		}
		return respOther, nil, i + 1, nil
	case '*':
	default:
		return 0, nil, 0, errProto
	}
	count, p, err := respInt(buf, 1)
	if err != nil {
		return 0, nil, 0, err
	}
	if count < 1 || count > 8 {
		return 0, nil, 0, errProto
	}
	var first, last []byte
	for e := 0; e < count; e++ {
		if p >= len(buf) {
			return 0, nil, 0, errShort
		}
		switch buf[p] {
		case '$':
			l, q, err := respInt(buf, p+1)
			if err != nil {
				return 0, nil, 0, err
			}
			if l < 0 || l > 64<<20 {
				return 0, nil, 0, errProto
			}
			if len(buf) < q+l+2 {
				return 0, nil, 0, errShort
			}
			v := buf[q : q+l]
			if e == 0 {
				first = v
			}
			last = v
			p = q + l + 2
		case ':':
			_, q, err := respInt(buf, p+1)
			if err != nil {
				return 0, nil, 0, err
			}
			p = q
		default:
			return 0, nil, 0, errProto
		}
	}
	switch string(first) {
	case "message":
		return respMessage, last, p, nil
	case "subscribe":
		return respSubscribe, nil, p, nil
	}
	return respOther, nil, p, nil
}

// respInt parses a decimal (optionally negative) ending in "\r\n" at buf[p:],
// returning it and the offset after the CRLF.
func respInt(buf []byte, p int) (int, int, error) {
	neg := false
	if p < len(buf) && buf[p] == '-' {
		neg = true
		p++
	}
	v := 0
	for ; p < len(buf); p++ {
		c := buf[p]
		if c == '\r' {
			if p+1 >= len(buf) {
				return 0, 0, errShort
			}
			if neg {
				v = -v
			}
			return v, p + 2, nil
		}
		if c < '0' || c > '9' || v > 1<<40 {
			return 0, 0, errProto
		}
		v = v*10 + int(c-'0')
	}
	return 0, 0, errShort
}
