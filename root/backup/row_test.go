package backup

import (
	"encoding/binary"
	"testing"

	"tickrelay/wire"
)

func TestAppendRowLayout(t *testing.T) {
	m := wire.Msg{Type: wire.TypeAddOrder, Security: 700, OrderID: 9}
	f, _ := wire.AppendMsgFrame(nil, 42, 123, &m)
	item := wire.AppendRelayItem(nil, 456, f[wire.FeedLenSize:])
	row := appendRow(nil, wire.Pos(9, 42), item)
	be := binary.BigEndian
	if be.Uint16(row) != 7 {
		t.Fatalf("field count %d", be.Uint16(row))
	}
	p := row[2:]
	next := func() []byte {
		l := int32(be.Uint32(p))
		p = p[4:]
		if l < 0 {
			return nil
		}
		v := p[:l]
		p = p[l:]
		return v
	}
	if v := next(); be.Uint64(v) != 9 {
		t.Fatalf("epoch %x", v)
	}
	if v := next(); be.Uint64(v) != 42 {
		t.Fatalf("seq %x", v)
	}
	if v := next(); be.Uint64(v) != 123 {
		t.Fatalf("exch_send %x", v)
	}
	if v := next(); be.Uint64(v) != 456 {
		t.Fatalf("root_recv %x", v)
	}
	if v := next(); be.Uint16(v) != wire.TypeAddOrder {
		t.Fatalf("msg_type %x", v)
	}
	if v := next(); string(v) != "00700" {
		t.Fatalf("symbol %q", v)
	}
	if v := next(); string(v) != string(f[wire.FeedLenSize:]) || len(p) != 0 {
		t.Fatalf("body %x rest %d", v, len(p))
	}
	// A malformed item still makes a row (zero stamps, NULL symbol).
	if r := appendRow(nil, 1, []byte{1, 2}); len(r) != 2+4*12+6+4+4 {
		t.Fatalf("short item row %d bytes", len(r))
	}
}

func TestAppendRowNoAlloc(t *testing.T) {
	m := wire.Msg{Type: wire.TypeTrade, Security: 5}
	f, _ := wire.AppendMsgFrame(nil, 1, 1, &m)
	item := wire.AppendRelayItem(nil, 2, f[wire.FeedLenSize:])
	buf := make([]byte, 0, 1<<20)
	if n := testing.AllocsPerRun(1000, func() { buf = appendRow(buf[:0], 1, item) }); n != 0 {
		t.Fatalf("appendRow allocates %v per row", n)
	}
}

func BenchmarkAppendRow(b *testing.B) {
	m := wire.Msg{Type: wire.TypeTrade, Security: 5}
	f, _ := wire.AppendMsgFrame(nil, 1, 1, &m)
	item := wire.AppendRelayItem(nil, 2, f[wire.FeedLenSize:])
	buf := make([]byte, 0, 1<<20)
	b.SetBytes(int64(len(item)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if len(buf) > 1<<19 {
			buf = buf[:0]
		}
		buf = appendRow(buf, uint64(i), item)
	}
}
