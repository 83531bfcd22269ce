package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// checkRelaySplits feeds every strict prefix of frame to NextRelayFrame
// (ErrShort, nothing consumed), then the frame followed by junk.
func checkRelaySplits(t *testing.T, frame []byte) (byte, []byte) {
	t.Helper()
	for k := 0; k < len(frame); k++ {
		typ, p, n, err := NextRelayFrame(frame[:k])
		if err != ErrShort || n != 0 || p != nil || typ != 0 {
			t.Fatalf("prefix %d/%d: typ %q n %d err %v, want ErrShort", k, len(frame), typ, n, err)
		}
	}
	buf := append(append([]byte(nil), frame...), 0, 0, 0, 0, 'X')
	typ, p, n, err := NextRelayFrame(buf)
	if err != nil || n != len(frame) {
		t.Fatalf("complete: n %d err %v, want %d", n, err, len(frame))
	}
	if !bytes.Equal(p, frame[RelayLenSize+1:]) {
		t.Fatal("payload differs")
	}
	return typ, p
}

func TestRelayControlFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		typ   byte
		check func(t *testing.T, p []byte)
	}{
		{"hello", AppendHello(nil, Hello{FromSeq: 42, Name: "child-1"}), RelayHello, func(t *testing.T, p []byte) {
			if h := ParseHello(p); h != (Hello{FromSeq: 42, Name: "child-1"}) {
				t.Fatalf("%+v", h)
			}
		}},
		{"hello no name", AppendHello(nil, Hello{FromSeq: 1<<64 - 1, Epoch: 1<<32 - 1}), RelayHello, func(t *testing.T, p []byte) {
			if h := ParseHello(p); h != (Hello{FromSeq: 1<<64 - 1, Epoch: 1<<32 - 1}) {
				t.Fatalf("%+v", h)
			}
		}},
		{"reset", AppendReset(nil, Reset{Epoch: 5, Seq: 1, Prev: 4, PrevLast: 1 << 40}), RelayReset, func(t *testing.T, p []byte) {
			if r := ParseReset(p); r != (Reset{Epoch: 5, Seq: 1, Prev: 4, PrevLast: 1 << 40}) {
				t.Fatalf("%+v", r)
			}
		}},
		{"heartbeat", AppendHeartbeatFrame(nil, 1<<64-1, -1<<63), RelayHeartbeat, func(t *testing.T, p []byte) {
			if s, rt := ParseHeartbeat(p); s != 1<<64-1 || rt != -1<<63 {
				t.Fatal(s, rt)
			}
		}},
		{"time req", AppendTimeReq(nil, 1<<63-1), RelayTimeReq, func(t *testing.T, p []byte) {
			if t0 := ParseTimeReq(p); t0 != 1<<63-1 {
				t.Fatal(t0)
			}
		}},
		{"time reply", AppendTimeReply(nil, 1, -2, 3), RelayTimeReply, func(t *testing.T, p []byte) {
			if t0, t1, t2 := ParseTimeReply(p); t0 != 1 || t1 != -2 || t2 != 3 {
				t.Fatal(t0, t1, t2)
			}
		}},
		{"error", AppendRelayError(nil, RelayErr{Code: CodeSeqGone, Seq: 17, Reason: "too old"}), RelayError, func(t *testing.T, p []byte) {
			e := ParseRelayError(p)
			if e != (RelayErr{Code: CodeSeqGone, Seq: 17, Reason: "too old"}) {
				t.Fatalf("%+v", e)
			}
			if e.Error() != "relay error 1: too old" {
				t.Fatal(e.Error())
			}
		}},
		{"error no reason", AppendRelayError(nil, RelayErr{Code: CodeSeqFuture, Seq: 0}), RelayError, func(t *testing.T, p []byte) {
			if e := ParseRelayError(p); e != (RelayErr{Code: CodeSeqFuture}) {
				t.Fatalf("%+v", e)
			}
		}},
		{"empty batch", emptyBatch(-7), RelayBatch, func(t *testing.T, p []byte) {
			var r BatchReader
			r.Reset(p)
			if r.Next() || r.Err() != nil || r.Count != 0 || r.RootSend != -7 {
				t.Fatalf("%+v %v", r, r.Err())
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := int(binary.LittleEndian.Uint32(tt.frame)); got != len(tt.frame)-RelayLenSize {
				t.Fatalf("len prefix %d, frame %d", got, len(tt.frame))
			}
			typ, p := checkRelaySplits(t, tt.frame)
			if typ != tt.typ {
				t.Fatalf("type %q, want %q", typ, tt.typ)
			}
			tt.check(t, p)
		})
	}
}

func emptyBatch(rootSend int64) []byte {
	b, at := BeginBatch(nil, 0, rootSend)
	return EndBatch(b, at, 0)
}

func rawRelay(l uint32, typ byte, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, l)
	return append(append(b, typ), payload...)
}

func TestRelayFrameBad(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		kind  error
	}{
		{"zero length", []byte{0, 0, 0, 0, 'H'}, ErrEmpty},
		{"over limit", binary.LittleEndian.AppendUint32(nil, MaxRelayFrame+1), ErrTooLarge},
		{"max u32", []byte{0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"unknown type", rawRelay(9, 'q', make([]byte, 8)), ErrUnknownType},
		{"type zero", rawRelay(1, 0, nil), ErrUnknownType},
		{"hello short", rawRelay(8, RelayHello, make([]byte, 7)), ErrTruncated},
		{"batch short", rawRelay(12, RelayBatch, make([]byte, 11)), ErrTruncated},
		{"heartbeat short", rawRelay(16, RelayHeartbeat, make([]byte, 15)), ErrTruncated},
		{"time req short", rawRelay(1, RelayTimeReq, nil), ErrTruncated},
		{"time reply short", rawRelay(24, RelayTimeReply, make([]byte, 23)), ErrTruncated},
		{"error short", rawRelay(10, RelayError, make([]byte, 9)), ErrTruncated},
		{"garbage", bytes.Repeat([]byte{0x11}, 64), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, p, n, err := NextRelayFrame(tt.frame)
			if typ != 0 || p != nil || n != 0 {
				t.Fatalf("typ %q p %v n %d on error", typ, p, n)
			}
			wantErr(t, err, tt.kind)
		})
	}
	// The largest legal frame is accepted.
	big := rawRelay(MaxRelayFrame, RelayHello, make([]byte, MaxRelayFrame-1))
	if _, _, n, err := NextRelayFrame(big); err != nil || n != len(big) {
		t.Fatal(n, err)
	}
}

// batchOf builds a batch frame of items with the given seqs and stamps.
func batchOf(rootSend int64, seqs []uint64, recvs []int64) []byte {
	b, at := BeginBatch([]byte("xx"), 0, rootSend)
	for i, seq := range seqs {
		m := Msg{Type: TypeTrade, Security: uint32(seq), Price: int32(seq)}
		frame, _ := AppendMsgFrame(nil, seq, int64(seq)*10, &m)
		b = AppendRelayItem(b, recvs[i], frame[FeedLenSize:])
	}
	return EndBatch(b, at, len(seqs))[2:]
}

func TestBatch(t *testing.T) {
	msgs := sampleMsgs()
	var bodies [][]byte
	buf, at := BeginBatch(make([]byte, 0, 64<<10), 0, 1000)
	for i := range msgs {
		frame, _ := AppendMsgFrame(nil, uint64(100+i), int64(i), &msgs[i])
		bodies = append(bodies, frame[FeedLenSize:])
		before := len(buf)
		buf = AppendRelayItem(buf, int64(900+i), frame[FeedLenSize:])
		if len(buf)-before != RelayItemHeader+len(frame)-FeedLenSize || len(buf)-before > MaxRelayItem {
			t.Fatalf("item size %d", len(buf)-before)
		}
	}
	buf = EndBatch(buf, at, len(msgs))
	typ, p := checkRelaySplits(t, buf)
	if typ != RelayBatch {
		t.Fatalf("type %q", typ)
	}
	var r BatchReader
	for pass := 0; pass < 2; pass++ { // Reset makes a reader reusable
		r.Reset(p)
		if r.RootSend != 1000 || r.Count != len(msgs) {
			t.Fatalf("rootSend %d count %d", r.RootSend, r.Count)
		}
		i := 0
		for r.Next() {
			it := r.Item
			if it.Seq != uint64(100+i) || it.ExchSend != int64(i) || it.RootRecv != int64(900+i) || !bytes.Equal(it.Body, bodies[i]) {
				t.Fatalf("item %d: %+v", i, it)
			}
			var m Msg
			if _, err := DecodeMsg(it.Body, &m); err != nil || m != msgs[i] {
				t.Fatalf("item %d decode: %v", i, err)
			}
			i++
		}
		if r.Err() != nil || i != len(msgs) {
			t.Fatalf("read %d items, err %v", i, r.Err())
		}
		if r.Next() {
			t.Fatal("Next after end")
		}
	}
	// Two batches back to back in one buffer, the first header not at offset 0.
	two := append(append([]byte(nil), buf...), batchOf(5, []uint64{1}, []int64{5})...)
	_, _, n, err := NextRelayFrame(two)
	if err != nil || n != len(buf) {
		t.Fatal(n, err)
	}
	if _, p2, _, err := NextRelayFrame(two[n:]); err != nil {
		t.Fatal(err)
	} else if r.Reset(p2); !r.Next() || r.Item.Seq != 1 || r.Next() || r.Err() != nil {
		t.Fatalf("second batch: %+v %v", r.Item, r.Err())
	}
}

func TestBatchReaderBad(t *testing.T) {
	good := batchOf(100, []uint64{5, 6, 7}, []int64{1, 100, 50})
	_, goodP, _, err := NextRelayFrame(good)
	if err != nil {
		t.Fatal(err)
	}
	setCount := func(p []byte, c uint32) []byte {
		p = append([]byte(nil), p...)
		binary.LittleEndian.PutUint32(p[8:], c)
		return p
	}
	payload := func(frame []byte) []byte {
		_, p, _, err := NextRelayFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	session, at := BeginBatch(nil, 0, 10)
	session = AppendRelayItem(session, 1, AppendHeartbeat(nil, 3, 0)[FeedLenSize:])
	session = EndBatch(session, at, 1)
	badBody, at := BeginBatch(nil, 0, 10)
	badBody = AppendRelayItem(badBody, 1, bytes.Repeat([]byte{7}, 30))
	badBody = EndBatch(badBody, at, 1)
	emptyBody, at := BeginBatch(nil, 0, 10)
	emptyBody = AppendRelayItem(emptyBody, 1, nil)
	emptyBody = EndBatch(emptyBody, at, 1)

	tests := []struct {
		name  string
		p     []byte
		items int // items read before the error
		kind  error
	}{
		{"payload short", goodP[:15], 0, ErrTruncated},
		{"nil payload", nil, 0, ErrTruncated},
		{"gap in seqs", payload(batchOf(100, []uint64{5, 6, 8}, []int64{1, 2, 3})), 2, ErrStamps},
		{"seq repeats", payload(batchOf(100, []uint64{5, 5}, []int64{1, 2})), 1, ErrStamps},
		{"seq goes back", payload(batchOf(100, []uint64{5, 4}, []int64{1, 2})), 1, ErrStamps},
		{"rootRecv > rootSend first", payload(batchOf(100, []uint64{5, 6}, []int64{101, 2})), 0, ErrStamps},
		{"rootRecv > rootSend later", payload(batchOf(100, []uint64{5, 6, 7}, []int64{1, 2, 1 << 62})), 2, ErrStamps},
		{"session item", payload(session), 0, ErrStamps},
		{"bad item body", payload(badBody), 0, ErrTruncated},
		{"empty item body", payload(emptyBody), 0, ErrEmpty},
		{"count too high", setCount(goodP, 4), 3, ErrTruncated},
		{"count huge", setCount(goodP, 1<<32-1), 3, ErrTruncated},
		{"count too low", setCount(goodP, 2), 2, ErrTruncated},
		{"count zero with items", setCount(goodP, 0), 0, ErrTruncated},
	}
	// Cutting the good payload anywhere inside the items is truncation.
	for cut := batchFields + 1; cut < len(goodP); cut++ {
		itemsBefore := 0
		for off, i := batchFields, 0; i < 3; i++ {
			off += RelayItemHeader + int(binary.LittleEndian.Uint16(goodP[off+8:]))
			if off <= cut {
				itemsBefore++
			}
		}
		tests = append(tests, struct {
			name  string
			p     []byte
			items int
			kind  error
		}{"cut at " + itoa(int64(cut)), goodP[:cut], itemsBefore, ErrTruncated})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r BatchReader
			r.Reset(tt.p)
			n := 0
			for r.Next() {
				n++
			}
			if n != tt.items {
				t.Fatalf("read %d items, want %d", n, tt.items)
			}
			wantErr(t, r.Err(), tt.kind)
			if r.Next() {
				t.Fatal("Next true after error")
			}
		})
	}
	// rootRecv == rootSend is allowed.
	var r BatchReader
	r.Reset(payload(batchOf(7, []uint64{1, 2}, []int64{7, 7})))
	for r.Next() {
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}
