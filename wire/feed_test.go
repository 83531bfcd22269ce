package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// checkFeedSplits feeds every strict prefix of frame to NextFeedFrame
// (ErrShort, nothing consumed) and then the whole frame followed by junk.
func checkFeedSplits(t *testing.T, frame []byte) []byte {
	t.Helper()
	for k := 0; k < len(frame); k++ {
		body, n, err := NextFeedFrame(frame[:k])
		if err != ErrShort || n != 0 || body != nil {
			t.Fatalf("prefix %d/%d: body %v n %d err %v, want ErrShort", k, len(frame), body, n, err)
		}
	}
	buf := append(append([]byte(nil), frame...), 0xff, 0xff, 0xff)
	body, n, err := NextFeedFrame(buf)
	if err != nil || n != len(frame) {
		t.Fatalf("complete: n %d err %v, want %d nil", n, err, len(frame))
	}
	if !bytes.Equal(body, frame[FeedLenSize:]) {
		t.Fatal("body differs from frame minus prefix")
	}
	return body
}

func TestFeedFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		seq      uint64
		sendTime int64
		typ      uint16
		fields   []byte
	}{
		{"heartbeat", 0, 1, TypeHeartbeat, make([]byte, 8)},
		{"logon", 0, 0, TypeLogon, make([]byte, logonFields)},
		{"logon reply min", 0, -1, TypeLogonReply, make([]byte, logonReplyFields)},
		{"logon reply max", 0, 0, TypeLogonReply, make([]byte, MaxFeedBody-MinFeedBody)},
		{"status", 1, 1 << 62, TypeSecurityStatus, make([]byte, sizeSecurityStatus)},
		{"nominal max seq", 1<<64 - 1, -1 << 63, TypeNominalPrice, make([]byte, sizeNominalPrice)},
		{"empty book", 9, 9, TypeAggregateBook, make([]byte, sizeBookHeader)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := AppendFeedFrame([]byte("prefix"), tt.seq, tt.sendTime, tt.typ, tt.fields)[len("prefix"):]
			if got := int(binary.LittleEndian.Uint16(frame)); got != MinFeedBody+len(tt.fields) {
				t.Fatalf("len %d", got)
			}
			body := checkFeedSplits(t, frame)
			h, err := ParseFeedBody(body)
			if err != nil {
				t.Fatal(err)
			}
			want := FeedHeader{Seq: tt.seq, SendTime: tt.sendTime, MsgSize: uint16(MsgHeaderSize + len(tt.fields)), MsgType: tt.typ}
			if h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
		})
	}
}

// feedFrame builds a frame with an arbitrary length prefix and body.
func rawFeedFrame(l int, body []byte) []byte {
	return append(binary.LittleEndian.AppendUint16(nil, uint16(l)), body...)
}

func feedBody(seq uint64, typ uint16, msgSize int, fields []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, seq)
	b = binary.LittleEndian.AppendUint64(b, 5)
	b = binary.LittleEndian.AppendUint16(b, uint16(msgSize))
	b = binary.LittleEndian.AppendUint16(b, typ)
	return append(b, fields...)
}

func TestFeedFrameBad(t *testing.T) {
	okBody := feedBody(1, TypeNominalPrice, 12, make([]byte, 8))
	book21 := make([]byte, sizeBookHeader+21*sizeBookEntry)
	book21[7] = 21
	book2short := make([]byte, sizeBookHeader+sizeBookEntry)
	book2short[7] = 2
	tests := []struct {
		name  string
		frame []byte
		kind  error
	}{
		{"zero length", rawFeedFrame(0, nil), ErrEmpty},
		{"zero length with bytes", rawFeedFrame(0, okBody), ErrEmpty},
		{"over limit", rawFeedFrame(MaxFeedBody+1, nil), ErrTooLarge},
		{"max u16", rawFeedFrame(0xffff, nil), ErrTooLarge},
		{"under headers", rawFeedFrame(MinFeedBody-1, okBody[:MinFeedBody-1]), ErrTruncated},
		{"msgSize too small", rawFeedFrame(len(okBody), feedBody(1, TypeNominalPrice, 11, make([]byte, 8))), ErrTruncated},
		{"msgSize too large", rawFeedFrame(len(okBody), feedBody(1, TypeNominalPrice, 13, make([]byte, 8))), ErrTruncated},
		{"field size wrong", rawFeedFrame(len(okBody)+1, feedBody(1, TypeNominalPrice, 13, make([]byte, 9))), ErrTruncated},
		{"unknown type", rawFeedFrame(len(okBody), feedBody(1, 99, 12, make([]byte, 8))), ErrUnknownType},
		{"type zero", rawFeedFrame(len(okBody), feedBody(1, 0, 12, make([]byte, 8))), ErrUnknownType},
		{"data with seq 0", rawFeedFrame(len(okBody), feedBody(0, TypeNominalPrice, 12, make([]byte, 8))), ErrStamps},
		{"session with seq", rawFeedFrame(28, feedBody(3, TypeHeartbeat, 12, make([]byte, 8))), ErrStamps},
		{"logon reply short", rawFeedFrame(33, feedBody(0, TypeLogonReply, 17, make([]byte, 13))), ErrTruncated},
		{"book header short", rawFeedFrame(27, feedBody(1, TypeAggregateBook, 11, make([]byte, 7))), ErrTruncated},
		{"book too many entries", rawFeedFrame(MinFeedBody+len(book21), feedBody(1, TypeAggregateBook, 4+len(book21), book21)), ErrTooLarge},
		{"book entries missing", rawFeedFrame(MinFeedBody+len(book2short), feedBody(1, TypeAggregateBook, 4+len(book2short), book2short)), ErrTruncated},
		{"garbage", rawFeedFrame(40, bytes.Repeat([]byte{0xa5}, 40)), ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n, err := NextFeedFrame(tt.frame)
			if body != nil || n != 0 {
				t.Fatalf("body %v n %d on error", body, n)
			}
			wantErr(t, err, tt.kind)
			if int(binary.LittleEndian.Uint16(tt.frame)) == len(tt.frame)-FeedLenSize {
				// The prefix matches the body: the body itself is bad.
				if _, err := ParseFeedBody(tt.frame[FeedLenSize:]); !errors.Is(err, tt.kind) {
					t.Fatalf("ParseFeedBody: %v, want %v", err, tt.kind)
				}
				var m Msg
				if _, err := DecodeMsg(tt.frame[FeedLenSize:], &m); err == nil {
					t.Fatal("DecodeMsg accepted a bad body")
				}
			}
		})
	}
	// A bad length prefix is rejected before the body has arrived.
	if _, _, err := NextFeedFrame(rawFeedFrame(MaxFeedBody+1, nil)[:2]); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("early reject: %v", err)
	}
	for _, short := range [][]byte{nil, {}, {5}} {
		if _, _, err := NextFeedFrame(short); err != ErrShort {
			t.Fatalf("%v: %v", short, err)
		}
	}
	for _, b := range [][]byte{nil, make([]byte, MinFeedBody-1), make([]byte, MaxFeedBody+1)} {
		if _, err := ParseFeedBody(b); err == nil {
			t.Fatalf("ParseFeedBody(len %d) accepted", len(b))
		}
	}
}

func TestLogon(t *testing.T) {
	tests := []struct {
		name string
		in   Logon
		want Logon
	}{
		{"plain", Logon{User: "alice", Password: "s3cret", StartSeq: 1}, Logon{User: "alice", Password: "s3cret", StartSeq: 1}},
		{"empty live edge", Logon{}, Logon{}},
		{"epoch", Logon{User: "a", StartSeq: 9, Epoch: 1<<32 - 1}, Logon{User: "a", StartSeq: 9, Epoch: 1<<32 - 1}},
		{"exact 16", Logon{User: strings.Repeat("u", 16), Password: strings.Repeat("p", 16), StartSeq: 1<<64 - 1},
			Logon{User: strings.Repeat("u", 16), Password: strings.Repeat("p", 16), StartSeq: 1<<64 - 1}},
		{"cut to 16", Logon{User: strings.Repeat("u", 20), Password: strings.Repeat("p", 17)},
			Logon{User: strings.Repeat("u", 16), Password: strings.Repeat("p", 16)}},
		{"trailing spaces trimmed", Logon{User: "bob  ", Password: "pw "}, Logon{User: "bob", Password: "pw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := AppendLogon(nil, tt.in)
			body := checkFeedSplits(t, frame)
			got, err := ParseLogon(body)
			if err != nil || got != tt.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tt.want)
			}
			if _, err := ParseLogonReply(body); !errors.Is(err, ErrUnknownType) {
				t.Fatalf("ParseLogonReply(logon): %v", err)
			}
		})
	}
	hb := AppendHeartbeat(nil, 5, 6)
	if _, err := ParseLogon(hb[FeedLenSize:]); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("ParseLogon(heartbeat): %v", err)
	}
	if _, err := ParseLogon(hb[FeedLenSize : FeedLenSize+10]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("ParseLogon(short): %v", err)
	}
}

func TestLogonReply(t *testing.T) {
	long := strings.Repeat("r", 2000)
	tests := []struct {
		name string
		in   LogonReply
		want LogonReply
	}{
		{"ok", LogonReply{Status: LogonOK, NextSeq: 1}, LogonReply{Status: LogonOK, NextSeq: 1}},
		{"epoch", LogonReply{Status: LogonOK, NextSeq: 7, Epoch: 2026120701}, LogonReply{Status: LogonOK, NextSeq: 7, Epoch: 2026120701}},
		{"bad auth", LogonReply{Status: LogonBadAuth, Reason: "bad password"}, LogonReply{Status: LogonBadAuth, Reason: "bad password"}},
		{"unavailable", LogonReply{Status: LogonUnavailable, NextSeq: 1<<64 - 1, Reason: "gone"}, LogonReply{Status: LogonUnavailable, NextSeq: 1<<64 - 1, Reason: "gone"}},
		{"malformed", LogonReply{Status: LogonMalformed, Reason: "x\x00y"}, LogonReply{Status: LogonMalformed, Reason: "x\x00y"}},
		{"reason cut", LogonReply{Status: 0xffff, Reason: long}, LogonReply{Status: 0xffff, Reason: long[:MaxFeedBody-MinFeedBody-logonReplyFields]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := AppendLogonReply(nil, tt.in)
			if len(frame) > FeedLenSize+MaxFeedBody {
				t.Fatalf("frame %d bytes", len(frame))
			}
			body := checkFeedSplits(t, frame)
			got, err := ParseLogonReply(body)
			if err != nil || got != tt.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tt.want)
			}
			if _, err := ParseLogon(body); !errors.Is(err, ErrUnknownType) {
				t.Fatalf("ParseLogon(reply): %v", err)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	for _, tt := range []struct {
		next     uint64
		sendTime int64
	}{{0, 0}, {1, 1}, {1<<64 - 1, 1<<63 - 1}, {12345, -5}} {
		frame := AppendHeartbeat(nil, tt.next, tt.sendTime)
		body := checkFeedSplits(t, frame)
		h, err := ParseFeedBody(body)
		if err != nil || h.MsgType != TypeHeartbeat || h.Seq != 0 || h.SendTime != tt.sendTime {
			t.Fatalf("%+v %v", h, err)
		}
		if got := HeartbeatNextSeq(body); got != tt.next {
			t.Fatalf("next %d, want %d", got, tt.next)
		}
		var m Msg
		if _, err := DecodeMsg(body, &m); !errors.Is(err, ErrUnknownType) {
			t.Fatalf("DecodeMsg(heartbeat): %v", err)
		}
		if _, ok := SecurityOf(body); ok {
			t.Fatal("SecurityOf(heartbeat) ok")
		}
	}
}

func TestMsgRoundTrip(t *testing.T) {
	for i, m := range sampleMsgs() {
		t.Run(typeName(m.Type)+"/"+itoa(int64(m.NumEntries)), func(t *testing.T) {
			seq, st := uint64(i+1), int64(1_700_000_000_000_000_000+i)
			frame, ok := AppendMsgFrame(nil, seq, st, &m)
			if !ok {
				t.Fatal("AppendMsgFrame refused")
			}
			body := checkFeedSplits(t, frame)
			got := Msg{Type: 999, Price: 77, NumEntries: 3} // stale contents must be overwritten
			got.Entries[MaxBookEntries-1].AggQty = 1
			h, err := DecodeMsg(body, &got)
			if err != nil {
				t.Fatal(err)
			}
			if h.Seq != seq || h.SendTime != st || h.MsgType != m.Type || int(h.MsgSize) != len(body)-FeedHeaderSize {
				t.Fatalf("header %+v", h)
			}
			if got != m {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, m)
			}
			if code, ok := SecurityOf(body); !ok || code != m.Security {
				t.Fatalf("SecurityOf %d %v, want %d", code, ok, m.Security)
			}
			// Encoding into a dirty buffer with spare room must not leak old bytes into fillers.
			dirty := bytes.Repeat([]byte{0xee}, 4096)[:3]
			frame2, _ := AppendMsgFrame(dirty, seq, st, &m)
			if !bytes.Equal(frame2[3:], frame) {
				t.Fatal("encoding into a dirty buffer differs")
			}
		})
	}
	if n := len(book(MaxBookEntries).Entries); n != MaxBookEntries {
		t.Fatal(n)
	}
}

func TestAppendMsgFrameRefuses(t *testing.T) {
	dst := []byte("keep")
	for _, tt := range []struct {
		name string
		m    Msg
		seq  uint64
	}{
		{"session type", Msg{Type: TypeHeartbeat}, 1},
		{"unknown type", Msg{Type: 12345}, 1},
		{"zero type", Msg{}, 1},
		{"too many entries", Msg{Type: TypeAggregateBook, NumEntries: MaxBookEntries + 1}, 1},
		{"seq 0", Msg{Type: TypeTrade}, 0},
	} {
		got, ok := AppendMsgFrame(dst, tt.seq, 0, &tt.m)
		if ok || string(got) != "keep" {
			t.Errorf("%s: ok %v dst %q", tt.name, ok, got)
		}
	}
}

func TestSecurityOf(t *testing.T) {
	m := Msg{Type: TypeTrade, Security: 1234}
	frame, _ := AppendMsgFrame(nil, 1, 0, &m)
	body := frame[FeedLenSize:]
	tests := []struct {
		name string
		body []byte
		code uint32
		ok   bool
	}{
		{"trade", body, 1234, true},
		{"nil", nil, 0, false},
		{"header only", body[:MinFeedBody], 0, false},
		{"just enough", body[:MinFeedBody+4], 1234, true},
		{"logon", AppendLogon(nil, Logon{User: "u"})[FeedLenSize:], 0, false},
		{"unknown type", feedBody(1, 77, 12, []byte{1, 0, 0, 0, 0, 0, 0, 0}), 0, false},
	}
	for _, tt := range tests {
		code, ok := SecurityOf(tt.body)
		if code != tt.code || ok != tt.ok {
			t.Errorf("%s: %d %v, want %d %v", tt.name, code, ok, tt.code, tt.ok)
		}
	}
}

func TestIsDataType(t *testing.T) {
	n := 0
	for ty := 0; ty <= 0xffff; ty++ {
		if IsDataType(uint16(ty)) {
			n++
			if typeCode(uint16(ty)) == "" {
				t.Errorf("data type %d has no text code", ty)
			}
		}
	}
	if n != 10 {
		t.Fatalf("%d data types, want 10", n)
	}
}

// TestFeedStream decodes many frames from one buffer handed over in
// arbitrary chunks, as a socket would.
func TestFeedStream(t *testing.T) {
	var stream []byte
	var want []Msg
	stream = AppendLogonReply(stream, LogonReply{NextSeq: 1})
	for i, m := range sampleMsgs() {
		stream, _ = AppendMsgFrame(stream, uint64(i+1), int64(i), &m)
		want = append(want, m)
		if i == 3 {
			stream = AppendHeartbeat(stream, uint64(i+2), 0)
		}
	}
	for _, chunk := range []int{1, 2, 3, 7, 64, len(stream)} {
		var acc []byte
		var got []Msg
		sessions := 0
		for off := 0; off < len(stream); off += chunk {
			acc = append(acc, stream[off:min(off+chunk, len(stream))]...)
			for {
				body, n, err := NextFeedFrame(acc)
				if err == ErrShort {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				var m Msg
				if _, err := DecodeMsg(body, &m); err != nil {
					if !errors.Is(err, ErrUnknownType) {
						t.Fatal(err)
					}
					sessions++
				} else {
					got = append(got, m)
				}
				acc = acc[n:]
			}
		}
		if len(acc) != 0 || sessions != 2 || len(got) != len(want) {
			t.Fatalf("chunk %d: left %d sessions %d msgs %d", chunk, len(acc), sessions, len(got))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("chunk %d msg %d differs", chunk, i)
			}
		}
	}
}

func TestSequenceReset(t *testing.T) {
	for _, r := range []SequenceReset{{Epoch: 1, NextSeq: 1}, {Epoch: 2026120702, NextSeq: MaxSeq}} {
		frame := AppendSequenceReset(nil, r, 42)
		body := checkFeedSplits(t, frame)
		h, err := ParseFeedBody(body)
		if err != nil || h.MsgType != TypeSequenceReset || h.Seq != 0 || h.SendTime != 42 {
			t.Fatalf("%+v: header %+v %v", r, h, err)
		}
		if got := ParseSequenceReset(body); got != r {
			t.Fatalf("got %+v, want %+v", got, r)
		}
	}
	// A reset is a session message: at seq 0 only, of its exact size.
	if _, err := ParseFeedBody(feedBody(5, TypeSequenceReset, 16, make([]byte, 12))); !errors.Is(err, ErrStamps) {
		t.Fatalf("reset at seq 5: %v", err)
	}
	if _, err := ParseFeedBody(feedBody(0, TypeSequenceReset, 15, make([]byte, 11))); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short reset: %v", err)
	}
}

func TestPos(t *testing.T) {
	p := Pos(7, 9)
	if PosEpoch(p) != 7 || PosSeq(p) != 9 || Pos(7, MaxSeq) >= Pos(8, 1) || Pos(7, 9)+1 != Pos(7, 10) {
		t.Fatalf("positions: %x", p)
	}
}
