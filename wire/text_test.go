package wire

import (
	"bytes"
	"strings"
	"testing"
)

func TestTextFrameRoundTrip(t *testing.T) {
	st := Stamps{ExchSend: 1_700_000_000_000_000_001, RootRecv: 2, RootSend: 0, ChildRecv: 1<<63 - 1, ChildSend: 1_700_000_000_000_000_005}
	for i, m := range sampleMsgs() {
		t.Run(typeName(m.Type)+"/"+itoa(int64(m.NumEntries)), func(t *testing.T) {
			seq := uint64(i) * 1e17
			buf := make([]byte, 0, MaxTextFrame)
			frame := AppendTextFrame(buf, seq, &m, st)
			if len(frame) > MaxTextFrame {
				t.Fatalf("frame %d bytes > MaxTextFrame", len(frame))
			}
			if frame[len(frame)-1] != '\n' || bytes.Count(frame, []byte{'\n'}) != 1 {
				t.Fatalf("frame %q: want exactly one trailing newline", frame)
			}
			if KindOf(frame) != LineFrame {
				t.Fatalf("KindOf(%q) = %d", frame, KindOf(frame))
			}
			for _, line := range [][]byte{frame, frame[:len(frame)-1]} {
				var got Msg
				gseq, gst, err := DecodeTextFrame(line, &got)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				if gseq != seq || gst != st || got != m {
					t.Fatalf("%q decoded to seq %d st %+v\n%+v", line, gseq, gst, got)
				}
				again := AppendTextFrame(nil, gseq, &got, gst)
				if !bytes.Equal(again, frame) {
					t.Fatalf("re-encoded\n%q\nwant\n%q", again, frame)
				}
			}
			// SetChildSend rewrites only the last stamp, in place.
			f2 := append([]byte(nil), frame...)
			SetChildSend(f2, 42)
			var got Msg
			_, gst, err := DecodeTextFrame(f2, &got)
			want := st
			want.ChildSend = 42
			if err != nil || gst != want || len(f2) != len(frame) {
				t.Fatalf("after SetChildSend: %+v %v", gst, err)
			}
		})
	}
}

func TestTextFrameGolden(t *testing.T) {
	st := Stamps{1, 2, 3, 4, 5}
	stamps := " t=0000000000000000001,0000000000000000002,0000000000000000003,0000000000000000004,0000000000000000005\n"
	sd := sampleMsgs()[0]
	bk := book(2)
	tests := []struct {
		m    Msg
		want string
	}{
		{sd, "SD 9 00700 mkt=MAIN isin=HK0000069689 ccy=HKD name=TENCENT_HOLDINGS_LTD lot=100 prev=380.200"},
		{Msg{Type: TypeSecurityStatus, Security: 5, Suspension: 3}, "SS 9 00005 susp=3"},
		{Msg{Type: TypeAddOrder, Security: 700, OrderID: 1, Price: 62500, Qty: 100, Side: 1, OrderType: 2, BookPos: -1},
			"AO 9 00700 oid=1 px=62.500 qty=100 side=1 ot=2 pos=-1"},
		{Msg{Type: TypeModifyOrder, Security: 700, OrderID: 1, Qty: 5, BookPos: 3}, "MO 9 00700 oid=1 qty=5 side=0 pos=3"},
		{Msg{Type: TypeDeleteOrder, Security: 123456, OrderID: 8, Side: 1}, "DO 9 123456 oid=8 side=1"},
		{Msg{Type: TypeNominalPrice, Security: 0, Price: -1}, "NP 9 00000 px=-0.001"},
		{Msg{Type: TypeTrade, Security: 700, TradeID: 3, Price: 1000, Qty: 2, TrdType: -4, TradeTime: 77}, "TR 9 00700 tid=3 px=1.000 qty=2 tt=-4 time=77"},
		{book(0), "BK 9 00700 n=0 e="},
		{bk, "BK 9 00700 n=2 e=0:1:0:2147483.647:1:4294967295,1:2:1:-2147483.631:1001:4294967294"},
		{Msg{Type: TypeStatistics, Security: 1, SharesTraded: 10, Turnover: -1 << 63, High: 5, Low: -5, Last: 1234, VWAP: 0, ShortShares: 1, ShortTurnover: 1<<63 - 1},
			"ST 9 00001 vol=10 to=-9223372036854775.808 hi=0.005 lo=-0.005 last=1.234 vwap=0.000 ssv=1 sst=9223372036854775.807"},
		{Msg{Type: TypeClosingPrice, Security: 2, Price: 100, NumberOfTrades: 6}, "CP 9 00002 px=0.100 trades=6"},
	}
	for _, tt := range tests {
		t.Run(tt.want[:2], func(t *testing.T) {
			got := string(AppendTextFrame(nil, 9, &tt.m, st))
			if got != tt.want+stamps {
				t.Fatalf("got  %q\nwant %q", got, tt.want+stamps)
			}
		})
	}
}

func TestTextFrameLossyFields(t *testing.T) {
	// Bytes the text form cannot carry become '?', NUL padding is trimmed,
	// negative stamps clamp to 0; decoding yields the normalised value.
	var m Msg
	m.Type, m.Security = TypeSecurityDefinition, 1
	copy(m.Market[:], "A\x00")
	copy(m.ISIN[:], "x=y,z_\xff\t")
	copy(m.Currency[:], "  ")
	copy(m.Name[:], "a b")
	frame := AppendTextFrame(nil, 1, &m, Stamps{ExchSend: -5})
	if !bytes.Contains(frame, []byte(" mkt=A isin=x?y?z??? ccy= name=a_b ")) {
		t.Fatalf("%q", frame)
	}
	if !bytes.Contains(frame, []byte(" t=0000000000000000000,")) {
		t.Fatalf("%q", frame)
	}
	var got Msg
	if _, _, err := DecodeTextFrame(frame, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.Market[:]) != "A   " || string(got.ISIN[:]) != "x?y?z???    " || string(got.Currency[:]) != "   " ||
		string(got.Name[:]) != "a b"+strings.Repeat(" ", 37) {
		t.Fatalf("%q %q %q %q", got.Market, got.ISIN, got.Currency, got.Name)
	}
}

func TestDecodeTextFrameBad(t *testing.T) {
	stamps := " t=0000000000000000001,0000000000000000002,0000000000000000003,0000000000000000004,0000000000000000005"
	good := "TR 9 00700 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps
	tests := []struct {
		name string
		line string
		kind error
	}{
		{"empty", "", ErrUnknownType},
		{"newline only", "\n", ErrUnknownType},
		{"unknown type", "XX 1 00700" + stamps, ErrUnknownType},
		{"lower case type", "tr 9 00700 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrUnknownType},
		{"garbage", "\x00\xff\x10 garbage", ErrUnknownType},
		{"no seq", "TR", ErrSyntax},
		{"bad seq", "TR x 00700 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"seq overflow", "TR 18446744073709551616 00700 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"bad symbol", "TR 9 7x0 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"symbol overflow", "TR 9 4294967296 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"missing symbol", "TR 9", ErrSyntax},
		{"double space", "TR 9  00700 tid=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"key order", "TR 9 00700 px=1.000 tid=3 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"key without =", "TR 9 00700 tid3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"key prefix", "TR 9 00700 ti=3 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"empty value", "TR 9 00700 tid= px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"u32 overflow", "TR 9 00700 tid=4294967296 px=1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"i16 overflow", "TR 9 00700 tid=3 px=1.000 qty=2 tt=32768 time=77" + stamps, ErrSyntax},
		{"i16 underflow", "TR 9 00700 tid=3 px=1.000 qty=2 tt=-32769 time=77" + stamps, ErrSyntax},
		{"price no decimals", "TR 9 00700 tid=3 px=1 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price two decimals", "TR 9 00700 tid=3 px=1.00 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price minus zero", "TR 9 00700 tid=3 px=-0.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price no whole", "TR 9 00700 tid=3 px=-.100 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price plus", "TR 9 00700 tid=3 px=+1.000 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price i32 overflow", "TR 9 00700 tid=3 px=2147483.648 qty=2 tt=-4 time=77" + stamps, ErrSyntax},
		{"price i64 overflow", "ST 9 00001 vol=10 to=9223372036854775.808 hi=0.005 lo=-0.005 last=1.234 vwap=0.000 ssv=1 sst=0.000" + stamps, ErrSyntax},
		{"price i64 underflow", "ST 9 00001 vol=10 to=-9223372036854775.809 hi=0.005 lo=-0.005 last=1.234 vwap=0.000 ssv=1 sst=0.000" + stamps, ErrSyntax},
		{"price huge", "ST 9 00001 vol=10 to=99999999999999999999.000 hi=0.005 lo=-0.005 last=1.234 vwap=0.000 ssv=1 sst=0.000" + stamps, ErrSyntax},
		{"missing stamps", "TR 9 00700 tid=3 px=1.000 qty=2 tt=-4 time=77", ErrSyntax},
		{"short stamp", good[:len(good)-1], ErrSyntax},
		{"stamp separator", strings.Replace(good, ",", ";", 1), ErrSyntax},
		{"stamp non digit", strings.Replace(good, "0000000000000000003", "000000000000000000x", 1), ErrSyntax},
		{"stamp over i64", strings.Replace(good, "0000000000000000003", "9999999999999999999", 1), ErrSyntax},
		{"trailing bytes", good + " x=1", ErrSyntax},
		{"crlf", good + "\r\n", ErrSyntax},
		{"text too long", "SS 1 00001 susp=1" + stamps, nil},
		{"market too long", "SD 1 00001 mkt=ABCDE isin= ccy= name= lot=1 prev=0.000" + stamps, ErrSyntax},
		{"text with =", "SD 1 00001 mkt=A=B isin= ccy= name= lot=1 prev=0.000" + stamps, ErrSyntax},
		{"text with ,", "SD 1 00001 mkt=A,B isin= ccy= name= lot=1 prev=0.000" + stamps, ErrSyntax},
		{"text with tab", "SD 1 00001 mkt=A\tB isin= ccy= name= lot=1 prev=0.000" + stamps, ErrSyntax},
		{"text with 8-bit", "SD 1 00001 mkt=A\xe9 isin= ccy= name= lot=1 prev=0.000" + stamps, ErrSyntax},
		{"susp overflow", "SS 1 00001 susp=256" + stamps, ErrSyntax},
		{"book n over max", "BK 1 00001 n=21 e=" + stamps, ErrSyntax},
		{"book too few entries", "BK 1 00001 n=2 e=0:1:0:1.000:1:1" + stamps, ErrSyntax},
		{"book too many entries", "BK 1 00001 n=1 e=0:1:0:1.000:1:1,0:1:0:1.000:1:1" + stamps, ErrSyntax},
		{"book entries with n=0", "BK 1 00001 n=0 e=0:1:0:1.000:1:1" + stamps, ErrSyntax},
		{"book entry short", "BK 1 00001 n=1 e=0:1:0:1.000:1" + stamps, ErrSyntax},
		{"book entry long", "BK 1 00001 n=1 e=0:1:0:1.000:1:1:1" + stamps, ErrSyntax},
		{"book level overflow", "BK 1 00001 n=1 e=0:256:0:1.000:1:1" + stamps, ErrSyntax},
		{"book side overflow", "BK 1 00001 n=1 e=65536:1:0:1.000:1:1" + stamps, ErrSyntax},
		{"book price bad", "BK 1 00001 n=1 e=0:1:0:1.0:1:1" + stamps, ErrSyntax},
		{"book orders overflow", "BK 1 00001 n=1 e=0:1:0:1.000:1:4294967296" + stamps, ErrSyntax},
		{"book empty entry", "BK 1 00001 n=2 e=0:1:0:1.000:1:1," + stamps, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Msg
			_, _, err := DecodeTextFrame([]byte(tt.line), &m)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("%q: %v", tt.line, err)
				}
				return
			}
			wantErr(t, err, tt.kind)
		})
	}
}

func TestSymbols(t *testing.T) {
	tests := []struct {
		code uint32
		text string
	}{
		{0, "00000"}, {5, "00005"}, {700, "00700"}, {9999, "09999"}, {10000, "10000"},
		{99999, "99999"}, {100000, "100000"}, {1<<32 - 1, "4294967295"},
	}
	for _, tt := range tests {
		if got := string(AppendSymbol([]byte("x"), tt.code)); got != "x"+tt.text {
			t.Errorf("AppendSymbol(%d) = %q, want %q", tt.code, got, tt.text)
		}
		if got, ok := ParseSymbol([]byte(tt.text)); !ok || got != tt.code {
			t.Errorf("ParseSymbol(%q) = %d %v", tt.text, got, ok)
		}
	}
	for _, s := range []string{"700", "0", "00000000700"[1:]} {
		if _, ok := ParseSymbol([]byte(s)); !ok {
			t.Errorf("ParseSymbol(%q) refused", s)
		}
	}
	for _, s := range []string{"", "-1", "4294967296", "00000000001", "7a", " 700", "+7", "*"} {
		if v, ok := ParseSymbol([]byte(s)); ok {
			t.Errorf("ParseSymbol(%q) = %d, want refusal", s, v)
		}
	}
}

func TestParsePrice(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0.000", 0, true}, {"62.500", 62500, true}, {"-0.001", -1, true}, {"-1.999", -1999, true},
		{"007.000", 7000, true},
		{"9223372036854775.807", 1<<63 - 1, true}, {"-9223372036854775.808", -1 << 63, true},
		{"9223372036854775.808", 0, false}, {"-9223372036854775.809", 0, false},
		{"18446744073709551.615", 0, false}, {"18446744073709551.616", 0, false},
		{"-0.000", 0, false}, {".000", 0, false}, {"-.000", 0, false}, {"1.00", 0, false},
		{"1.0000", 0, false}, {"1,000", 0, false}, {"1.-00", 0, false}, {"--1.000", 0, false},
		{"+1.000", 0, false}, {"", 0, false}, {"1.", 0, false}, {"a.bcd", 0, false},
	}
	for _, tt := range tests {
		got, ok := parsePrice([]byte(tt.in))
		if ok != tt.ok || got != tt.want {
			t.Errorf("parsePrice(%q) = %d %v, want %d %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok {
			if back := string(appendPrice(nil, "", got)); back != strings.TrimLeft(tt.in, "0") && !strings.HasPrefix(back, "0.") {
				t.Errorf("appendPrice(%d) = %q", got, back)
			}
		}
	}
}

func TestTextFrameSeq(t *testing.T) {
	for _, tc := range []struct {
		frame string
		seq   uint64
		ok    bool
	}{
		{"TR 17 00005 px=1.000\n", 17, true}, {"BK 18446744073709551615\n", 1<<64 - 1, true}, {"NP 9", 9, true},
		{"", 0, false}, {"TR", 0, false}, {"TR ", 0, false}, {"TR x 00005", 0, false}, {"TR 18446744073709551616 0", 0, false},
	} {
		if seq, ok := TextFrameSeq([]byte(tc.frame)); seq != tc.seq || ok != tc.ok {
			t.Errorf("TextFrameSeq(%q) = %d %v, want %d %v", tc.frame, seq, ok, tc.seq, tc.ok)
		}
	}
}

func TestTextFrameCode(t *testing.T) {
	for _, tc := range []struct {
		frame string
		code  uint32
		ok    bool
	}{
		{"TR 17 00005 px=1.000\n", 5, true}, {"BK 1 00700\n", 700, true}, {"NP 9 4294967295", 1<<32 - 1, true},
		{"", 0, false}, {"TR", 0, false}, {"TR 17", 0, false}, {"TR 17 ", 0, false}, {"TR 17 x5 px=1", 0, false}, {"TR 17 4294967296 ", 0, false},
	} {
		if code, ok := TextFrameCode([]byte(tc.frame)); code != tc.code || ok != tc.ok {
			t.Errorf("TextFrameCode(%q) = %d %v, want %d %v", tc.frame, code, ok, tc.code, tc.ok)
		}
	}
}
