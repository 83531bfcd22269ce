package wire

import (
	"encoding/binary"
)

// Relay frame types.
const (
	RelayHello     byte = 'H'
	RelayBatch     byte = 'B'
	RelayHeartbeat byte = 'K'
	RelayTimeReq   byte = 'T'
	RelayTimeReply byte = 'R'
	RelayError     byte = 'E'
	// RelayReset: the epoch changed; the batches after it carry the new one.
	RelayReset byte = 'Z'
	// RelayAnnounce: a child's name, client address, state and load
	// (child -> root, every second); RelayDirectory: the root's view of
	// its children (root -> child, when it changes). See directory.go.
	RelayAnnounce  byte = 'A'
	RelayDirectory byte = 'D'
)

const (
	// RelayLenSize is the size of a relay frame's length prefix.
	RelayLenSize = 4
	// MaxRelayFrame bounds a relay frame (type + payload).
	MaxRelayFrame = 4 << 20
	// RelayBatchHeader is the frame prefix, type, rootSend, count and epoch.
	RelayBatchHeader = RelayLenSize + 1 + batchFields
	batchFields      = 8 + 4 + 4
	// RelayItemHeader is rootRecv i64 + bodyLen u16 before each body.
	RelayItemHeader = 8 + 2
	// MaxRelayItem is the largest encoded item.
	MaxRelayItem = RelayItemHeader + MaxFeedBody
)

// Relay error codes.
const (
	CodeSeqGone   uint16 = 1 // requested seq older than anything held; seq = oldest held
	CodeBadFrame  uint16 = 2 // peer sent a malformed frame; connection closes
	CodeShutdown  uint16 = 3 // server is going away
	CodeSlow      uint16 = 4 // peer fell too far behind
	CodeSeqFuture uint16 = 5 // requested seq beyond the head + 1; seq = head
)

// RelayCodeName names an Error frame's code for metric labels: seq_gone,
// bad_frame, shutdown, slow, seq_future, or other.
func RelayCodeName(code uint16) string {
	switch code {
	case CodeSeqGone:
		return "seq_gone"
	case CodeBadFrame:
		return "bad_frame"
	case CodeShutdown:
		return "shutdown"
	case CodeSlow:
		return "slow"
	case CodeSeqFuture:
		return "seq_future"
	}
	return "other"
}

// NextRelayFrame returns the type and payload of the relay frame at the
// start of buf and the bytes it occupies. The payload aliases buf.
func NextRelayFrame(buf []byte) (typ byte, payload []byte, n int, err error) {
	if len(buf) < RelayLenSize {
		return 0, nil, 0, ErrShort
	}
	l := binary.LittleEndian.Uint32(buf)
	switch {
	case l == 0:
		return 0, nil, 0, &Error{What: "relay frame", Kind: ErrEmpty}
	case l > MaxRelayFrame:
		return 0, nil, 0, errorf("relay frame", ErrTooLarge, "%d > %d bytes", l, MaxRelayFrame)
	}
	if len(buf) < RelayLenSize+int(l) {
		return 0, nil, 0, ErrShort
	}
	typ = buf[RelayLenSize]
	payload = buf[RelayLenSize+1 : RelayLenSize+int(l)]
	if want := relayPayloadMin(typ); want < 0 {
		return 0, nil, 0, errorf("relay frame", ErrUnknownType, "type %q", typ)
	} else if len(payload) < want {
		return 0, nil, 0, errorf("relay frame", ErrTruncated, "type %q payload %d < %d", typ, len(payload), want)
	}
	return typ, payload, RelayLenSize + int(l), nil
}

func relayPayloadMin(typ byte) int {
	switch typ {
	case RelayHello:
		return 12
	case RelayBatch:
		return batchFields
	case RelayReset:
		return resetFields
	case RelayAnnounce:
		return announceFixed
	case RelayDirectory:
		return directoryFixed
	case RelayHeartbeat:
		return 16
	case RelayTimeReq:
		return 8
	case RelayTimeReply:
		return 24
	case RelayError:
		return 10
	case RelayControlSync:
		return 16
	case RelayControlReq:
		return 4
	case RelayControl:
		return 28
	case RelayControlSnapshot:
		return 20
	}
	return -1
}

func appendRelayHeader(dst []byte, typ byte, payload int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+payload))
	return append(dst, typ)
}

// Hello asks the root for every item from FromSeq of Epoch on. Epoch 0
// asks for the root's current epoch; FromSeq 0 (with Epoch 0) for the live
// edge (the root's head + 1).
type Hello struct {
	FromSeq uint64
	Epoch   uint32
	Name    string
}

// AppendHello appends a Hello frame.
func AppendHello(dst []byte, h Hello) []byte {
	dst = appendRelayHeader(dst, RelayHello, 12+len(h.Name))
	dst = binary.LittleEndian.AppendUint64(dst, h.FromSeq)
	dst = binary.LittleEndian.AppendUint32(dst, h.Epoch)
	return append(dst, h.Name...)
}

// ParseHello decodes a Hello payload.
func ParseHello(p []byte) Hello {
	return Hello{FromSeq: binary.LittleEndian.Uint64(p), Epoch: binary.LittleEndian.Uint32(p[8:]), Name: string(p[12:])}
}

// Reset tells a child the epoch changed: Prev ended at PrevLast (the last
// seq the root holds of it), and the items after this frame are Epoch's,
// from Seq on.
type Reset struct {
	Epoch, Prev   uint32
	Seq, PrevLast uint64
}

const resetFields = 4 + 8 + 4 + 8

// AppendReset appends a Reset frame.
func AppendReset(dst []byte, r Reset) []byte {
	dst = appendRelayHeader(dst, RelayReset, resetFields)
	dst = binary.LittleEndian.AppendUint32(dst, r.Epoch)
	dst = binary.LittleEndian.AppendUint64(dst, r.Seq)
	dst = binary.LittleEndian.AppendUint32(dst, r.Prev)
	return binary.LittleEndian.AppendUint64(dst, r.PrevLast)
}

// ParseReset decodes a Reset payload.
func ParseReset(p []byte) Reset {
	le := binary.LittleEndian
	return Reset{Epoch: le.Uint32(p), Seq: le.Uint64(p[4:]), Prev: le.Uint32(p[12:]), PrevLast: le.Uint64(p[16:])}
}

// AppendHeartbeatFrame appends a relay heartbeat.
func AppendHeartbeatFrame(dst []byte, headSeq uint64, rootTime int64) []byte {
	dst = appendRelayHeader(dst, RelayHeartbeat, 16)
	dst = binary.LittleEndian.AppendUint64(dst, headSeq)
	return binary.LittleEndian.AppendUint64(dst, uint64(rootTime))
}

// ParseHeartbeat decodes a relay heartbeat payload.
func ParseHeartbeat(p []byte) (headSeq uint64, rootTime int64) {
	return binary.LittleEndian.Uint64(p), int64(binary.LittleEndian.Uint64(p[8:]))
}

// AppendTimeReq appends a time request carrying the child's send time t0.
func AppendTimeReq(dst []byte, t0 int64) []byte {
	dst = appendRelayHeader(dst, RelayTimeReq, 8)
	return binary.LittleEndian.AppendUint64(dst, uint64(t0))
}

// ParseTimeReq decodes a time request payload.
func ParseTimeReq(p []byte) (t0 int64) { return int64(binary.LittleEndian.Uint64(p)) }

// AppendTimeReply appends the root's answer: t1 on receipt, t2 on send.
func AppendTimeReply(dst []byte, t0, t1, t2 int64) []byte {
	dst = appendRelayHeader(dst, RelayTimeReply, 24)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t0))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t1))
	return binary.LittleEndian.AppendUint64(dst, uint64(t2))
}

// ParseTimeReply decodes a time reply payload.
func ParseTimeReply(p []byte) (t0, t1, t2 int64) {
	le := binary.LittleEndian
	return int64(le.Uint64(p)), int64(le.Uint64(p[8:])), int64(le.Uint64(p[16:]))
}

// RelayErr is a relay error frame.
type RelayErr struct {
	Code   uint16
	Seq    uint64
	Reason string
}

func (e RelayErr) Error() string { return "relay error " + itoa(int64(e.Code)) + ": " + e.Reason }

// AppendRelayError appends an error frame.
func AppendRelayError(dst []byte, e RelayErr) []byte {
	dst = appendRelayHeader(dst, RelayError, 10+len(e.Reason))
	dst = binary.LittleEndian.AppendUint16(dst, e.Code)
	dst = binary.LittleEndian.AppendUint64(dst, e.Seq)
	return append(dst, e.Reason...)
}

// ParseRelayError decodes an error payload.
func ParseRelayError(p []byte) RelayErr {
	le := binary.LittleEndian
	return RelayErr{Code: le.Uint16(p), Seq: le.Uint64(p[2:]), Reason: string(p[10:])}
}

// AppendRelayItem appends one batch item: the root receive stamp and the
// feed body. This is also the ring's slot encoding.
func AppendRelayItem(dst []byte, rootRecv int64, body []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(rootRecv))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(body)))
	return append(dst, body...)
}

// BeginBatch appends a batch header with a zero count and returns the
// offset of the header, to be finished by EndBatch after appending items
// (all of epoch).
func BeginBatch(dst []byte, epoch uint32, rootSend int64) ([]byte, int) {
	at := len(dst)
	dst = appendRelayHeader(dst, RelayBatch, batchFields)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(rootSend))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	return binary.LittleEndian.AppendUint32(dst, epoch), at
}

// EndBatch fixes the length and count of the batch begun at offset at.
func EndBatch(dst []byte, at int, count int) []byte {
	le := binary.LittleEndian
	le.PutUint32(dst[at:], uint32(len(dst)-at-RelayLenSize))
	le.PutUint32(dst[at+RelayLenSize+1+8:], uint32(count))
	return dst
}

// Item is one decoded batch item. Body aliases the frame.
type Item struct {
	Seq      uint64
	ExchSend int64
	RootRecv int64
	Body     []byte // the feed body: headers and message
}

// BatchReader walks the items of a batch payload without allocating.
// Use: r.Reset(payload); for r.Next() { use r.Item }; check r.Err().
type BatchReader struct {
	RootSend int64
	Count    int
	Epoch    uint32 // of every item
	Item     Item
	rest     []byte
	seen     int
	err      error
}

// Reset starts reading a batch payload (as returned by NextRelayFrame).
func (r *BatchReader) Reset(p []byte) {
	*r = BatchReader{}
	if len(p) < batchFields {
		r.err = errorf("relay batch", ErrTruncated, "payload %d < %d", len(p), batchFields)
		return
	}
	r.RootSend = int64(binary.LittleEndian.Uint64(p))
	r.Count = int(binary.LittleEndian.Uint32(p[8:]))
	r.Epoch = binary.LittleEndian.Uint32(p[12:])
	r.rest = p[batchFields:]
}

// Next decodes the next item into r.Item; false at the end or on error.
func (r *BatchReader) Next() bool {
	if r.err != nil {
		return false
	}
	if r.seen == r.Count {
		if len(r.rest) != 0 {
			r.err = errorf("relay batch", ErrTruncated, "%d bytes after %d items", len(r.rest), r.Count)
		}
		return false
	}
	if len(r.rest) < RelayItemHeader {
		r.err = errorf("relay batch", ErrTruncated, "item %d of %d: header", r.seen, r.Count)
		return false
	}
	le := binary.LittleEndian
	recv := int64(le.Uint64(r.rest))
	l := int(le.Uint16(r.rest[8:]))
	if len(r.rest) < RelayItemHeader+l {
		r.err = errorf("relay batch", ErrTruncated, "item %d of %d: body %d bytes", r.seen, r.Count, l)
		return false
	}
	body := r.rest[RelayItemHeader : RelayItemHeader+l]
	h, err := ParseFeedBody(body)
	if err != nil {
		r.err = err
		return false
	}
	switch {
	case h.Seq == 0:
		r.err = errorf("relay batch", ErrStamps, "item %d is a session message", r.seen)
	case h.Seq > MaxSeq:
		r.err = errorf("relay batch", ErrStamps, "seq %d beyond an epoch's %d", h.Seq, uint64(MaxSeq))
	case r.seen > 0 && h.Seq != r.Item.Seq+1:
		r.err = errorf("relay batch", ErrStamps, "seq %d after %d", h.Seq, r.Item.Seq)
	case recv > r.RootSend:
		r.err = errorf("relay batch", ErrStamps, "seq %d received at %d after batch send %d", h.Seq, recv, r.RootSend)
	}
	if r.err != nil {
		return false
	}
	r.Item = Item{Seq: h.Seq, ExchSend: h.SendTime, RootRecv: recv, Body: body}
	r.rest = r.rest[RelayItemHeader+l:]
	r.seen++
	return true
}

// NextRecv steps over the next item reading only its root receive stamp:
// a cheap walk over a batch this process built itself (no body checks, so
// not for batches off the wire). False at the end or on a truncated item.
func (r *BatchReader) NextRecv() (recv int64, ok bool) {
	if r.err != nil || r.seen == r.Count {
		return 0, false
	}
	if len(r.rest) < RelayItemHeader {
		r.err = errorf("relay batch", ErrTruncated, "item %d of %d: header", r.seen, r.Count)
		return 0, false
	}
	le := binary.LittleEndian
	recv = int64(le.Uint64(r.rest))
	l := RelayItemHeader + int(le.Uint16(r.rest[8:]))
	if len(r.rest) < l {
		r.err = errorf("relay batch", ErrTruncated, "item %d of %d: body %d bytes", r.seen, r.Count, l-RelayItemHeader)
		return 0, false
	}
	r.rest = r.rest[l:]
	r.seen++
	return recv, true
}

// Err returns the first decode error, if any.
func (r *BatchReader) Err() error { return r.err }
