package wire

import (
	"bytes"
	"errors"
	"testing"
)

// checkDecodeErr enforces the decoder contract on a failure: nothing
// consumed, and either ErrShort or a *Error wrapping a sentinel.
func checkDecodeErr(t *testing.T, n int, err error) {
	t.Helper()
	if n != 0 {
		t.Fatalf("consumed %d bytes with error %v", n, err)
	}
	if err == ErrShort {
		return
	}
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v is not a *wire.Error", err)
	}
	for _, k := range []error{ErrEmpty, ErrTooLarge, ErrTruncated, ErrUnknownType, ErrStamps, ErrSyntax} {
		if errors.Is(err, k) {
			return
		}
	}
	t.Fatalf("error %v wraps no sentinel", err)
}

func feedSeeds(f *testing.F) {
	var stream []byte
	for i, m := range sampleMsgs() {
		frame, _ := AppendMsgFrame(nil, uint64(i+1), int64(i), &m)
		f.Add(frame)
		stream = append(stream, frame...)
	}
	f.Add(stream)
	f.Add(AppendLogon(nil, Logon{User: "u", Password: "p", StartSeq: 5}))
	f.Add(AppendLogonReply(nil, LogonReply{Status: LogonBadAuth, NextSeq: 3, Reason: "no"}))
	f.Add(AppendHeartbeat(nil, 9, 9))
	f.Add(AppendSequenceReset(nil, SequenceReset{Epoch: 3, NextSeq: 1}, 9))
	f.Add(AppendLogon(nil, Logon{StartSeq: 5, Epoch: 2}))
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff})
	f.Add(rawFeedFrame(MinFeedBody, feedBody(1, TypeAggregateBook, 4, nil)))
	f.Add(rawFeedFrame(28, feedBody(1, TypeAggregateBook, 12, []byte{0, 0, 0, 0, 0, 0, 0, 200})))
}

// roundTripFeedBody checks that a valid body re-encodes to a frame that
// decodes to the same value, and that a second encoding is byte-identical.
func roundTripFeedBody(t *testing.T, body []byte) {
	h, err := ParseFeedBody(body)
	if err != nil {
		t.Fatalf("NextFeedFrame accepted a body ParseFeedBody refuses: %v", err)
	}
	switch h.MsgType {
	case TypeLogon:
		l, err := ParseLogon(body)
		if err != nil {
			t.Fatal(err)
		}
		b2, _, err := NextFeedFrame(AppendLogon(nil, l))
		if err != nil {
			t.Fatal(err)
		}
		if l2, err := ParseLogon(b2); err != nil || l2 != l {
			t.Fatalf("logon %+v -> %+v %v", l, l2, err)
		}
	case TypeLogonReply:
		r, err := ParseLogonReply(body)
		if err != nil {
			t.Fatal(err)
		}
		b2, _, err := NextFeedFrame(AppendLogonReply(nil, r))
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := ParseLogonReply(b2); err != nil || r2 != r {
			t.Fatalf("logon reply %+v -> %+v %v", r, r2, err)
		}
	case TypeHeartbeat:
		next := HeartbeatNextSeq(body)
		b2, _, err := NextFeedFrame(AppendHeartbeat(nil, next, h.SendTime))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b2, body) { // a heartbeat has no filler: bytes match
			t.Fatalf("heartbeat %x -> %x", body, b2)
		}
	case TypeSequenceReset:
		b2, _, err := NextFeedFrame(AppendSequenceReset(nil, ParseSequenceReset(body), h.SendTime))
		if err != nil || !bytes.Equal(b2, body) {
			t.Fatalf("sequence reset %x -> %x %v", body, b2, err)
		}
	default:
		var m, m2 Msg
		h1, err := DecodeMsg(body, &m)
		if err != nil || h1 != h {
			t.Fatalf("DecodeMsg: %+v %v", h1, err)
		}
		roundTripMsg(t, h, &m, &m2)
	}
}

func roundTripMsg(t *testing.T, h FeedHeader, m, m2 *Msg) {
	frame, ok := AppendMsgFrame(nil, h.Seq, h.SendTime, m)
	if !ok {
		t.Fatalf("AppendMsgFrame refused decoded %+v", m)
	}
	b2, n, err := NextFeedFrame(frame)
	if err != nil || n != len(frame) {
		t.Fatalf("re-encoded frame: %d %v", n, err)
	}
	h2, err := DecodeMsg(b2, m2)
	if err != nil || h2 != h || *m2 != *m {
		t.Fatalf("round trip changed value: %+v %v\n%+v\n%+v", h2, err, m, m2)
	}
	frame2, _ := AppendMsgFrame(nil, h2.Seq, h2.SendTime, m2)
	if !bytes.Equal(frame, frame2) {
		t.Fatal("second encoding differs")
	}
	if code, ok := SecurityOf(b2); !ok || code != m.Security {
		t.Fatalf("SecurityOf %d %v", code, ok)
	}
}

func FuzzNextFeedFrame(f *testing.F) {
	feedSeeds(f)
	f.Fuzz(func(t *testing.T, buf []byte) {
		for len(buf) > 0 {
			body, n, err := NextFeedFrame(buf)
			if err != nil {
				checkDecodeErr(t, n, err)
				return
			}
			if n < FeedLenSize+MinFeedBody || n > len(buf) || len(body) != n-FeedLenSize {
				t.Fatalf("n %d body %d buf %d", n, len(body), len(buf))
			}
			if _, n2, err := NextFeedFrame(buf[:n-1]); err != ErrShort || n2 != 0 {
				t.Fatalf("prefix of a valid frame: %d %v", n2, err)
			}
			roundTripFeedBody(t, body)
			buf = buf[n:]
		}
	})
}

func FuzzDecodeMsg(f *testing.F) {
	for i, m := range sampleMsgs() {
		frame, _ := AppendMsgFrame(nil, uint64(i+1), int64(i), &m)
		f.Add(frame[FeedLenSize:])
	}
	f.Add(AppendHeartbeat(nil, 1, 1)[FeedLenSize:])
	f.Add([]byte{})
	f.Add(make([]byte, MinFeedBody))
	f.Add(feedBody(1, TypeAggregateBook, 12, []byte{0, 0, 0, 0, 0, 0, 0, 200}))
	f.Fuzz(func(t *testing.T, body []byte) {
		SecurityOf(body)
		var m, m2 Msg
		h, err := DecodeMsg(body, &m)
		if err != nil {
			checkDecodeErr(t, 0, err)
			if _, perr := ParseFeedBody(body); perr == nil && IsDataType(h.MsgType) {
				t.Fatalf("DecodeMsg refused a valid data body: %v", err)
			}
			return
		}
		roundTripMsg(t, h, &m, &m2)
	})
}

func relaySeeds(f *testing.F) {
	var all []byte
	add := func(b []byte) { f.Add(b); all = append(all, b...) }
	add(AppendHello(nil, Hello{FromSeq: 1, Name: "c1"}))
	add(AppendHeartbeatFrame(nil, 5, 6))
	add(AppendTimeReq(nil, 7))
	add(AppendTimeReply(nil, 1, 2, 3))
	add(AppendRelayError(nil, RelayErr{Code: CodeSlow, Seq: 4, Reason: "slow"}))
	add(emptyBatch(0))
	add(AppendReset(nil, Reset{Epoch: 9, Seq: 1, Prev: 8, PrevLast: 77}))
	ann, _ := AppendAnnounce(nil, ChildInfo{Name: "c1", Addr: "127.0.0.1:9200", Load: ChildLoad{Clients: 5}})
	add(ann)
	dir, _ := AppendDirectory(nil, 3, []ChildInfo{{Name: "c1", Addr: "127.0.0.1:9200"}, {Name: "c2", Addr: "127.0.0.1:9201", State: ChildDraining}})
	add(dir)
	add(batchOf(100, []uint64{5, 6, 7}, []int64{1, 2, 3}))
	b, at := BeginBatch(nil, 0, 1<<62)
	for i, m := range sampleMsgs() {
		frame, _ := AppendMsgFrame(nil, uint64(i+1), int64(i), &m)
		b = AppendRelayItem(b, int64(i), frame[FeedLenSize:])
	}
	add(EndBatch(b, at, len(sampleMsgs())))
	f.Add(all)
	f.Add(batchOf(100, []uint64{5, 7}, []int64{1, 2}))
	f.Add(batchOf(1, []uint64{5}, []int64{2}))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 'Q'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
}

// readBatch returns the items of a batch payload, copying nothing.
func readBatch(p []byte) (rootSend int64, epoch uint32, items []Item, err error) {
	var r BatchReader
	r.Reset(p)
	for r.Next() {
		items = append(items, r.Item)
	}
	if r.Err() == nil && len(items) != r.Count {
		return 0, 0, nil, errors.New("count mismatch without error")
	}
	return r.RootSend, r.Epoch, items, r.Err()
}

func FuzzNextRelayFrame(f *testing.F) {
	relaySeeds(f)
	f.Fuzz(func(t *testing.T, buf []byte) {
		for len(buf) > 0 {
			typ, p, n, err := NextRelayFrame(buf)
			if err != nil {
				checkDecodeErr(t, n, err)
				return
			}
			if n != RelayLenSize+1+len(p) || n > len(buf) {
				t.Fatalf("n %d payload %d buf %d", n, len(p), len(buf))
			}
			if _, _, n2, err := NextRelayFrame(buf[:n-1]); err != ErrShort || n2 != 0 {
				t.Fatalf("prefix of a valid frame: %d %v", n2, err)
			}
			var re []byte
			switch typ {
			case RelayHello:
				re = AppendHello(nil, ParseHello(p))
			case RelayHeartbeat:
				head, rt := ParseHeartbeat(p)
				re = AppendHeartbeatFrame(nil, head, rt)
			case RelayTimeReq:
				re = AppendTimeReq(nil, ParseTimeReq(p))
			case RelayTimeReply:
				t0, t1, t2 := ParseTimeReply(p)
				re = AppendTimeReply(nil, t0, t1, t2)
			case RelayError:
				re = AppendRelayError(nil, ParseRelayError(p))
			case RelayReset:
				re = AppendReset(nil, ParseReset(p))
			case RelayAnnounce:
				c, err := ParseAnnounce(p)
				if err != nil {
					checkDecodeErr(t, 0, err)
					break
				}
				if re, err = AppendAnnounce(nil, c); err != nil {
					t.Fatalf("announce %+v decoded but does not encode: %v", c, err)
				}
			case RelayDirectory:
				e, kids, err := ParseDirectory(p)
				if err != nil {
					checkDecodeErr(t, 0, err)
					break
				}
				if re, err = AppendDirectory(nil, e, kids); err != nil {
					t.Fatalf("directory decoded but does not encode: %v", err)
				}
			case RelayBatch:
				rootSend, epoch, items, err := readBatch(p)
				if err != nil {
					checkDecodeErr(t, 0, err)
					break
				}
				b, at := BeginBatch(nil, epoch, rootSend)
				for _, it := range items {
					b = AppendRelayItem(b, it.RootRecv, it.Body)
				}
				re = EndBatch(b, at, len(items))
				if !bytes.Equal(re[RelayLenSize+1:], p) { // a batch has no filler: bytes match
					t.Fatalf("batch re-encoding differs:\n%x\n%x", p, re[RelayLenSize+1:])
				}
			default:
				t.Fatalf("NextRelayFrame accepted type %q", typ)
			}
			if re != nil {
				typ2, p2, n2, err := NextRelayFrame(re)
				if err != nil || typ2 != typ || n2 != len(re) {
					t.Fatalf("re-encoded frame: %q %d %v", typ2, n2, err)
				}
				// Extra trailing payload bytes are tolerated for fixed-size
				// frames; the value must survive, so the shorter encoding
				// is a prefix of the original payload.
				if !bytes.HasPrefix(p, p2) {
					t.Fatalf("re-encoded payload %x is not a prefix of %x", p2, p)
				}
			}
			buf = buf[n:]
		}
	})
}

func FuzzBatchReader(f *testing.F) {
	f.Add(batchOf(100, []uint64{5, 6, 7}, []int64{1, 2, 3})[RelayLenSize+1:])
	f.Add(emptyBatch(3)[RelayLenSize+1:])
	f.Add(batchOf(100, []uint64{5, 7}, []int64{1, 2})[RelayLenSize+1:])
	f.Add(batchOf(1, []uint64{5}, []int64{2})[RelayLenSize+1:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		rootSend, _, items, err := readBatch(p)
		// NextRecv walks the same items (or, past what Next rejects, more).
		var r BatchReader
		r.Reset(p)
		for i := 0; ; i++ {
			recv, ok := r.NextRecv()
			if !ok {
				if err == nil && i != len(items) {
					t.Fatalf("NextRecv stopped at item %d of %d", i, len(items))
				}
				break
			}
			if i < len(items) && recv != items[i].RootRecv {
				t.Fatalf("NextRecv item %d: recv %d, Next %d", i, recv, items[i].RootRecv)
			}
		}
		if err != nil {
			checkDecodeErr(t, 0, err)
			return
		}
		for i, it := range items {
			if it.RootRecv > rootSend || it.Seq == 0 || (i > 0 && it.Seq != items[i-1].Seq+1) {
				t.Fatalf("item %d breaks the batch invariants: %+v", i, it)
			}
		}
		b, at := BeginBatch(nil, 0, rootSend)
		for _, it := range items {
			b = AppendRelayItem(b, it.RootRecv, it.Body)
		}
		b = EndBatch(b, at, len(items))
		if !bytes.Equal(b[RelayLenSize+1:], p) {
			t.Fatal("batch re-encoding differs")
		}
	})
}

func FuzzDecodeTextFrame(f *testing.F) {
	st := Stamps{1, 2, 3, 4, 1<<63 - 1}
	for i, m := range sampleMsgs() {
		f.Add(AppendTextFrame(nil, uint64(i), &m, st))
	}
	f.Add([]byte("SD 1 7 mkt=A=B isin= ccy= name= lot=1 prev=0.000 t=0000000000000000001,0000000000000000002,0000000000000000003,0000000000000000004,0000000000000000005"))
	f.Add([]byte("ST 9 00001 vol=10 to=9223372036854775.808 hi=0.005 lo=-0.005 last=1.234 vwap=0.000 ssv=1 sst=0.000 t=0000000000000000001,0000000000000000002,0000000000000000003,0000000000000000004,0000000000000000005"))
	f.Add([]byte("BK 1 00001 n=2 e=0:1:0:1.000:1:1,"))
	f.Add([]byte(""))
	f.Add([]byte("TR"))
	f.Fuzz(func(t *testing.T, line []byte) {
		var m, m2 Msg
		seq, st, err := DecodeTextFrame(line, &m)
		if err != nil {
			checkDecodeErr(t, 0, err)
			return
		}
		if KindOf(line) != LineFrame {
			t.Fatalf("KindOf(%q) = %d for a decodable frame", line, KindOf(line))
		}
		frame := AppendTextFrame(nil, seq, &m, st)
		if len(frame) > MaxTextFrame {
			t.Fatalf("frame %d > MaxTextFrame", len(frame))
		}
		if code, ok := TextFrameCode(frame); !ok || code != m.Security {
			t.Fatalf("TextFrameCode %d %v, want %d", code, ok, m.Security)
		}
		if got, ok := TextFrameSeq(frame); !ok || got != seq {
			t.Fatalf("TextFrameSeq %d %v, want %d", got, ok, seq)
		}
		seq2, st2, err := DecodeTextFrame(frame, &m2)
		if err != nil || seq2 != seq || st2 != st || m2 != m {
			t.Fatalf("round trip of %q via %q: %v\n%+v\n%+v", line, frame, err, m, m2)
		}
		if frame2 := AppendTextFrame(nil, seq2, &m2, st2); !bytes.Equal(frame, frame2) {
			t.Fatalf("second encoding differs:\n%q\n%q", frame, frame2)
		}
		SetChildSend(frame, 12345)
		if _, st3, err := DecodeTextFrame(frame, &m2); err != nil || st3.ChildSend != 12345 {
			t.Fatalf("SetChildSend: %v", err)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"SUB 00700 00005\n", "UNSUB *\r\n", "RESUME 5 a b\n", "PING\n", "TIME -5\n",
		"SUB\n", "RESUME 0 x\n", "TIME 9223372036854775808\n", "\n", "garbage", "SUB a\nPING\nTIME 1\n",
		"OK SUB 00700 5\n", "OK UNSUB x\n", "OK RESUME 7\n", "TIME 1 2 3\n", "ERR BADCMD x\n", "PONG\r\n",
		"RESUME 7:5 a\n", "OK SUB 00700 5 2026120700\n", "OK RESUME 7 9\n", "RESET 9 1 8 500\n", "CHILDREN\n", "WATCH CHILDREN\n", "CHILDREN 2 a=h:1,up,1,2,3,4 b=h:2,draining,0,0,0,0\n",
		"INFO DRAIN 10000\n", "ERR BUSY retry=500 try=127.0.0.1:9300\n", "ERR BUSY retry=x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		syms := make([][]byte, 0, 4)
		for len(buf) > 0 {
			line, n, err := NextLine(buf)
			if err != nil {
				checkDecodeErr(t, n, err)
				return
			}
			if n == 0 || n > len(buf) || n > MaxLineLen || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("NextLine: n %d line %q", n, line)
			}
			if c, err := ParseCommand(line, syms); err != nil {
				checkDecodeErr(t, 0, err)
			} else {
				enc := appendCommand(nil, c)
				c2, err := ParseCommand(enc, nil)
				if err != nil || !sameCommand(c, c2) {
					t.Fatalf("command %q -> %q: %+v %v", line, enc, c2, err)
				}
				if enc2 := appendCommand(nil, c2); !bytes.Equal(enc, enc2) {
					t.Fatalf("second encoding differs: %q %q", enc, enc2)
				}
			}
			// Server lines a client parses.
			KindOf(line)
			if verb, sym, seq, err := ParseOK(line); err == nil {
				var s []byte
				if verb != CmdResume {
					s = []byte(sym)
				}
				re := AppendOK(nil, verb, s, seq, OKEpoch(line))
				v2, sym2, seq2, err := ParseOK(re)
				if err != nil || v2 != verb || sym2 != sym || seq2 != seq || verb != CmdUnsub && OKEpoch(re) != OKEpoch(line) {
					t.Fatalf("OK line %q: %q %q %d %v", line, v2, sym2, seq2, err)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			if e, kids, err := ParseChildrenLine(line); err == nil {
				if e2, kids2, err := ParseChildrenLine(AppendChildrenLine(nil, e, kids)); err != nil || e2 != e || len(kids2) != len(kids) {
					t.Fatalf("CHILDREN line %q: %v", line, err)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			if g, err := ParseDrainLine(line); err == nil {
				if g2, err := ParseDrainLine(AppendDrainLine(nil, g)); err != nil || g2 != g {
					t.Fatalf("INFO DRAIN line %q: %v %v", line, g2, err)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			if r, try, err := ParseBusy(line); err == nil {
				if r2, try2, err := ParseBusy(AppendBusy(nil, r, try)); err != nil || r2 != r || try2 != try {
					t.Fatalf("BUSY line %q: %v %v", line, r2, err)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			if r, err := ParseResetLine(line); err == nil {
				if r2, err := ParseResetLine(AppendResetLine(nil, r)); err != nil || r2 != r {
					t.Fatalf("RESET line %q: %+v %v", line, r2, err)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			if t0, t1, t2, err := ParseTimeLine(line); err == nil {
				a, b, c, err := ParseTimeLine(AppendTimeLine(nil, t0, t1, t2))
				if err != nil || a != t0 || b != t1 || c != t2 {
					t.Fatalf("TIME line %q", line)
				}
			} else {
				checkDecodeErr(t, 0, err)
			}
			buf = buf[n:]
		}
	})
}
