package harness

import (
	"bytes"
	"strconv"
	"testing"

	"tickrelay/wire"
)

func textFrame(seq uint64, st wire.Stamps) []byte {
	m := wire.Msg{Type: wire.TypeTrade, Security: 700, TradeID: 9, Price: 62500, Qty: 100, TradeTime: 5}
	return wire.AppendTextFrame(nil, seq, &m, st)
}

func TestFrameStamps(t *testing.T) {
	st := wire.Stamps{ExchSend: 1_700_000_000_000_000_001, RootRecv: 2, RootSend: 3, ChildRecv: 0, ChildSend: 1_799_999_999_999_999_999}
	f := textFrame(123456789, st)
	seq, got, ok := FrameStamps(bytes.TrimSuffix(f, []byte{'\n'}))
	if !ok || seq != 123456789 || got != st {
		t.Fatalf("got %d %+v %v", seq, got, ok)
	}
	// Agrees with the full decoder.
	var m wire.Msg
	dseq, dst, err := wire.DecodeTextFrame(f, &m)
	if err != nil || dseq != seq || dst != got {
		t.Fatalf("decoder says %d %+v %v", dseq, dst, err)
	}
	for _, bad := range []string{"", "OK SUB 00700 5", "PONG", "TR 1 00700 t=12", string(f[:len(f)-2])} {
		if _, _, ok := FrameStamps([]byte(bad)); ok {
			t.Errorf("accepted %q", bad)
		}
	}
	line := bytes.TrimSuffix(f, []byte{'\n'})
	if n := testing.AllocsPerRun(100, func() { FrameStamps(line) }); n != 0 {
		t.Fatalf("FrameStamps allocates %v", n)
	}
}

func TestNextNATSSplit(t *testing.T) {
	payload := textFrame(7, wire.Stamps{ExchSend: 42})
	var stream []byte
	stream = append(stream, "INFO {\"server_id\":\"x\"}\r\n+OK\r\nPING\r\n"...)
	stream = append(stream, "MSG t.00700 3 "+strconv.Itoa(len(payload))+"\r\n"...)
	stream = append(stream, payload...)
	stream = append(stream, "\r\nMSG t.00700 3 reply.x "+strconv.Itoa(len(payload))+"\r\n"...)
	stream = append(stream, payload...)
	stream = append(stream, "\r\nPONG\r\n-ERR 'Slow Consumer'\r\n"...)
	want := []natsKind{natsInfo, natsOK, natsPing, natsMsg, natsMsg, natsPong, natsErr}
	// Feed it in every split into two reads: units come out the same.
	for split := 0; split <= len(stream); split++ {
		got := splitUnits(t, stream, split, payload, natsMsg, nextNATS)
		if len(got) != len(want) {
			t.Fatalf("split %d: got %v", split, got)
		}
	}
	if _, _, _, err := nextNATS([]byte("BOGUS\r\n")); err != errProto {
		t.Fatalf("bogus: %v", err)
	}
	if _, _, _, err := nextNATS([]byte("MSG a 1 x1\r\n")); err != errProto {
		t.Fatalf("bad size: %v", err)
	}
}

func TestNextRESPSplit(t *testing.T) {
	payload := textFrame(8, wire.Stamps{ExchSend: 42})
	var stream []byte
	stream = append(stream, "*3\r\n$9\r\nsubscribe\r\n$7\r\nt.00700\r\n:1\r\n"...)
	stream = append(stream, "*3\r\n$7\r\nmessage\r\n$7\r\nt.00700\r\n$"+strconv.Itoa(len(payload))+"\r\n"...)
	stream = append(stream, payload...)
	stream = append(stream, "\r\n+OK\r\n"...)
	want := []respKind{respSubscribe, respMessage, respOther}
	for split := 0; split <= len(stream); split++ {
		got := splitUnits(t, stream, split, payload, respMessage, nextRESP)
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("split %d: got %v", split, got)
		}
	}
	if _, _, _, err := nextRESP([]byte("x")); err != errProto {
		t.Fatalf("bogus: %v", err)
	}
}

func TestTickrelaySubsLines(t *testing.T) {
	var subs []string
	for i := 0; i < 2000; i++ {
		subs = append(subs, string(wire.AppendSymbol(nil, uint32(i))))
	}
	out, want := tickrelaySubs(subs)
	if want != 2000 {
		t.Fatal(want)
	}
	n := 0
	for len(out) > 0 {
		line, used, err := wire.NextLine(out)
		if err != nil {
			t.Fatal(err)
		}
		c, err := wire.ParseCommand(line, nil)
		if err != nil || c.Verb != wire.CmdSub {
			t.Fatalf("%v %q", err, line)
		}
		n += len(c.Symbols)
		out = out[used:]
	}
	if n != 2000 {
		t.Fatalf("%d symbols in lines", n)
	}
}

// splitUnits parses stream delivered in two reads cut at split and returns
// the kinds of the units; every msg-kind unit must carry payload.
func splitUnits[K comparable](t *testing.T, stream []byte, split int, payload []byte, msg K,
	next func([]byte) (K, []byte, int, error)) []K {
	t.Helper()
	var got []K
	buf := append([]byte(nil), stream[:split]...)
	rest := stream[split:]
	for {
		k, p, n, err := next(buf)
		if err == errShort {
			if len(rest) == 0 {
				return got
			}
			buf, rest = append(buf, rest...), nil
			continue
		}
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		if k == msg && !bytes.Equal(p, payload) {
			t.Fatalf("split %d: payload %q", split, p)
		}
		got = append(got, k)
		buf = buf[n:]
	}
}
