package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

const (
	// FeedLenSize is the size of the length prefix of a feed frame.
	FeedLenSize = 2
	// FeedHeaderSize is seq u64 + sendTime i64 at the start of a body.
	FeedHeaderSize = 16
	// MsgHeaderSize is msgSize u16 + msgType u16.
	MsgHeaderSize = 4
	// MinFeedBody is the smallest valid body: headers and no fields.
	MinFeedBody = FeedHeaderSize + MsgHeaderSize
	// MaxFeedBody bounds a body; the real feed's packets fit a 1500 B MTU.
	MaxFeedBody = 1500
)

// Session message types (seq 0). Data message types are in omd.go.
const (
	TypeLogon      uint16 = 1
	TypeLogonReply uint16 = 2
	TypeHeartbeat  uint16 = 3
	// TypeSequenceReset (HKEX OMD's 100): the exchange starts a new epoch;
	// its items are numbered from NextSeq on.
	TypeSequenceReset uint16 = 100
)

// isSessionType reports whether t is a session message (carried at seq 0).
func isSessionType(t uint16) bool {
	return t == TypeLogon || t == TypeLogonReply || t == TypeHeartbeat || t == TypeSequenceReset
}

// Logon reply status codes.
const (
	LogonOK          uint16 = 0
	LogonBadAuth     uint16 = 1 // user or password rejected
	LogonUnavailable uint16 = 2 // start sequence no longer (or not yet) served
	LogonMalformed   uint16 = 3 // the logon frame itself was bad
)

// FeedHeader is the fixed part of a feed body.
type FeedHeader struct {
	Seq      uint64
	SendTime int64 // exchange send time, ns since the Unix epoch
	MsgSize  uint16
	MsgType  uint16
}

// NextFeedFrame returns the body of the feed frame at the start of buf and
// the bytes it occupies (prefix included). It checks the frame's structure
// (length bounds, msgSize agreement, known type and size) but not field
// values. The body aliases buf.
func NextFeedFrame(buf []byte) (body []byte, n int, err error) {
	body, _, n, err = nextFeedFrame(buf)
	return body, n, err
}

// nextFeedFrame is NextFeedFrame that also returns the body's headers, so a
// reader parses them once.
func nextFeedFrame(buf []byte) (body []byte, h FeedHeader, n int, err error) {
	if len(buf) < FeedLenSize {
		return nil, h, 0, ErrShort
	}
	l := int(binary.LittleEndian.Uint16(buf))
	if err := checkFeedLen(l); err != nil {
		return nil, h, 0, err
	}
	if len(buf) < FeedLenSize+l {
		return nil, h, 0, ErrShort
	}
	body = buf[FeedLenSize : FeedLenSize+l]
	if h, err = ParseFeedBody(body); err != nil {
		return nil, h, 0, err
	}
	return body, h, FeedLenSize + l, nil
}

func checkFeedLen(l int) error {
	switch {
	case l == 0:
		return &Error{What: "feed frame", Kind: ErrEmpty}
	case l > MaxFeedBody:
		return errorf("feed frame", ErrTooLarge, "body %d > %d bytes", l, MaxFeedBody)
	case l < MinFeedBody:
		return errorf("feed frame", ErrTruncated, "body %d < %d bytes", l, MinFeedBody)
	}
	return nil
}

// ParseFeedBody decodes and validates the headers of a feed body: msgSize
// must match the body, the type must be known and its size legal for it.
func ParseFeedBody(body []byte) (FeedHeader, error) {
	if err := checkFeedLen(len(body)); err != nil {
		return FeedHeader{}, err
	}
	h := FeedHeader{
		Seq:      binary.LittleEndian.Uint64(body[0:]),
		SendTime: int64(binary.LittleEndian.Uint64(body[8:])),
		MsgSize:  binary.LittleEndian.Uint16(body[16:]),
		MsgType:  binary.LittleEndian.Uint16(body[18:]),
	}
	if int(h.MsgSize) != len(body)-FeedHeaderSize {
		return h, errorf("feed frame", ErrTruncated, "msgSize %d, body holds %d", h.MsgSize, len(body)-FeedHeaderSize)
	}
	if err := checkMsgSize(h.MsgType, int(h.MsgSize)-MsgHeaderSize, body[MinFeedBody:]); err != nil {
		return h, err
	}
	if isSessionType(h.MsgType) != (h.Seq == 0) {
		return h, errorf("feed frame", ErrStamps, "type %d with seq %d", h.MsgType, h.Seq)
	}
	return h, nil
}

// AppendFeedFrame appends a complete frame (prefix, headers, fields).
// The caller guarantees len(fields) fits MaxFeedBody.
func AppendFeedFrame(dst []byte, seq uint64, sendTime int64, msgType uint16, fields []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(MinFeedBody+len(fields)))
	dst = appendFeedHeader(dst, seq, sendTime, msgType, len(fields))
	return append(dst, fields...)
}

func appendFeedHeader(dst []byte, seq uint64, sendTime int64, msgType uint16, nfields int) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(sendTime))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(MsgHeaderSize+nfields))
	return binary.LittleEndian.AppendUint16(dst, msgType)
}

// Logon is the first frame a feed client sends.
type Logon struct {
	User, Password string // at most 16 bytes each
	StartSeq       uint64 // first sequence wanted; 0 means "from the live edge"
	// Epoch is the session StartSeq belongs to (0: the exchange's current
	// one). An exchange past it answers with a later epoch, from its start.
	Epoch uint32
}

const logonFields = 16 + 16 + 8 + 4

// AppendLogon appends a Logon frame. Longer user or password are cut to 16 B.
func AppendLogon(dst []byte, l Logon) []byte {
	var f [logonFields]byte
	copy(f[0:16], l.User)
	copy(f[16:32], l.Password)
	binary.LittleEndian.PutUint64(f[32:], l.StartSeq)
	binary.LittleEndian.PutUint32(f[40:], l.Epoch)
	return AppendFeedFrame(dst, 0, 0, TypeLogon, f[:])
}

// ParseLogon decodes a Logon body (as returned by NextFeedFrame).
func ParseLogon(body []byte) (Logon, error) {
	h, err := ParseFeedBody(body)
	if err != nil {
		return Logon{}, err
	}
	if h.MsgType != TypeLogon {
		return Logon{}, errorf("logon", ErrUnknownType, "got type %d", h.MsgType)
	}
	f := body[MinFeedBody:]
	return Logon{
		User:     strings.TrimRight(string(f[0:16]), "\x00 "),
		Password: strings.TrimRight(string(f[16:32]), "\x00 "),
		StartSeq: binary.LittleEndian.Uint64(f[32:]),
		Epoch:    binary.LittleEndian.Uint32(f[40:]),
	}, nil
}

// LogonReply answers a Logon.
type LogonReply struct {
	Status  uint16
	NextSeq uint64 // first seq the stream will carry (status OK), or the oldest served
	Epoch   uint32 // the epoch the stream carries (or, refused, the exchange's)
	Reason  string
}

// logonReplyFields is the fixed part of a LogonReply, before its reason.
const logonReplyFields = 2 + 8 + 4

// AppendLogonReply appends a LogonReply frame; Reason is cut to fit.
func AppendLogonReply(dst []byte, r LogonReply) []byte {
	reason := r.Reason
	if max := MaxFeedBody - MinFeedBody - logonReplyFields; len(reason) > max {
		reason = reason[:max]
	}
	f := make([]byte, logonReplyFields, logonReplyFields+len(reason))
	binary.LittleEndian.PutUint16(f, r.Status)
	binary.LittleEndian.PutUint64(f[2:], r.NextSeq)
	binary.LittleEndian.PutUint32(f[10:], r.Epoch)
	return AppendFeedFrame(dst, 0, 0, TypeLogonReply, append(f, reason...))
}

// ParseLogonReply decodes a LogonReply body.
func ParseLogonReply(body []byte) (LogonReply, error) {
	h, err := ParseFeedBody(body)
	if err != nil {
		return LogonReply{}, err
	}
	if h.MsgType != TypeLogonReply {
		return LogonReply{}, errorf("logon reply", ErrUnknownType, "got type %d", h.MsgType)
	}
	f := body[MinFeedBody:]
	return LogonReply{
		Status:  binary.LittleEndian.Uint16(f),
		NextSeq: binary.LittleEndian.Uint64(f[2:]),
		Epoch:   binary.LittleEndian.Uint32(f[10:]),
		Reason:  string(f[logonReplyFields:]),
	}, nil
}

// AppendHeartbeat appends a feed heartbeat announcing the next sequence.
func AppendHeartbeat(dst []byte, nextSeq uint64, sendTime int64) []byte {
	var f [8]byte
	binary.LittleEndian.PutUint64(f[:], nextSeq)
	return AppendFeedFrame(dst, 0, sendTime, TypeHeartbeat, f[:])
}

// HeartbeatNextSeq returns the next sequence a heartbeat body announces.
func HeartbeatNextSeq(body []byte) uint64 {
	return binary.LittleEndian.Uint64(body[MinFeedBody:])
}

// SequenceReset is the exchange's announcement of a new epoch: the items
// after it are Epoch's, numbered from NextSeq.
type SequenceReset struct {
	Epoch   uint32
	NextSeq uint64
}

const sequenceResetFields = 4 + 8

// AppendSequenceReset appends a Sequence Reset frame.
func AppendSequenceReset(dst []byte, r SequenceReset, sendTime int64) []byte {
	var f [sequenceResetFields]byte
	binary.LittleEndian.PutUint32(f[:], r.Epoch)
	binary.LittleEndian.PutUint64(f[4:], r.NextSeq)
	return AppendFeedFrame(dst, 0, sendTime, TypeSequenceReset, f[:])
}

// Follows reports what is wrong with r as the reset after seq last of
// epoch (nil: it starts a later epoch at a seq in range).
func (r SequenceReset) Follows(epoch uint32, last uint64) error {
	switch {
	case r.NextSeq == 0 || r.NextSeq > MaxSeq:
		return fmt.Errorf("sequence reset to epoch %d seq %d: seq outside 1..%d", r.Epoch, r.NextSeq, uint64(MaxSeq))
	case r.Epoch <= epoch:
		return fmt.Errorf("sequence reset to epoch %d seq %d, not after ours (epoch %d, last seq %d)", r.Epoch, r.NextSeq, epoch, last)
	}
	return nil
}

// ParseSequenceReset decodes the fields of a Sequence Reset body (one
// NextFeedFrame returned, of that type).
func ParseSequenceReset(body []byte) SequenceReset {
	f := body[MinFeedBody:]
	return SequenceReset{Epoch: binary.LittleEndian.Uint32(f), NextSeq: binary.LittleEndian.Uint64(f[4:])}
}
