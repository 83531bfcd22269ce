package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func syms(s ...string) [][]byte {
	var out [][]byte
	for _, x := range s {
		out = append(out, []byte(x))
	}
	return out
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want Command
	}{
		{"SUB 00700", Command{Verb: CmdSub, Symbols: syms("00700")}},
		{"SUB 00700 00005 *", Command{Verb: CmdSub, Symbols: syms("00700", "00005", "*")}},
		{"  SUB   a.b_c-D  ", Command{Verb: CmdSub, Symbols: syms("a.b_c-D")}},
		{"SUB " + strings.Repeat("9", MaxSymbolLen), Command{Verb: CmdSub, Symbols: syms(strings.Repeat("9", MaxSymbolLen))}},
		{"UNSUB 00700", Command{Verb: CmdUnsub, Symbols: syms("00700")}},
		{"UNSUB * 1", Command{Verb: CmdUnsub, Symbols: syms("*", "1")}},
		{"RESUME 1 00700", Command{Verb: CmdResume, Seq: 1, Symbols: syms("00700")}},
		{"RESUME 4294967295 a b", Command{Verb: CmdResume, Seq: 1<<32 - 1, Symbols: syms("a", "b")}},
		{"RESUME 7:4294967295 a", Command{Verb: CmdResume, Seq: 1<<32 - 1, Epoch: 7, Symbols: syms("a")}},
		{"PING", Command{Verb: CmdPing}},
		{"PING ", Command{Verb: CmdPing}},
		{"TIME 0", Command{Verb: CmdTime}},
		{"TIME -9223372036854775808", Command{Verb: CmdTime, T0: -1 << 63}},
		{"TIME 1700000000000000000", Command{Verb: CmdTime, T0: 1_700_000_000_000_000_000}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			buf := make([][]byte, 0, 8)
			got, err := ParseCommand([]byte(tt.line), buf)
			if err != nil {
				t.Fatal(err)
			}
			if got.Verb != tt.want.Verb || got.Seq != tt.want.Seq || got.T0 != tt.want.T0 || !equalSyms(got.Symbols, tt.want.Symbols) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// Re-encoding gives a line that parses to the same command.
			again, err := ParseCommand(appendCommand(nil, got), nil)
			if err != nil || !sameCommand(again, got) {
				t.Fatalf("re-parse %+v %v", again, err)
			}
		})
	}
}

func equalSyms(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func sameCommand(a, b Command) bool {
	return a.Verb == b.Verb && a.Seq == b.Seq && a.Epoch == b.Epoch && a.T0 == b.T0 && equalSyms(a.Symbols, b.Symbols)
}

// appendCommand is the client side of ParseCommand (the wire package has no
// encoder for it; the client writes these lines by hand).
func appendCommand(dst []byte, c Command) []byte {
	dst = append(dst, c.Verb...)
	switch c.Verb {
	case CmdResume:
		dst = append(dst, ' ')
		if c.Epoch != 0 {
			dst = appendUint(dst, "", uint64(c.Epoch))
			dst = append(dst, ':')
		}
		dst = appendUint(dst, "", c.Seq)
	case CmdTime:
		dst = appendInt(dst, " ", c.T0)
	case CmdWatch:
		dst = append(dst, " "+CmdChildren...)
	}
	for _, s := range c.Symbols {
		dst = append(append(dst, ' '), s...)
	}
	return dst
}

func TestParseCommandBad(t *testing.T) {
	tests := []struct {
		line string
		kind error
	}{
		{"", ErrSyntax},
		{"   ", ErrSyntax},
		{"SUB", ErrSyntax},
		{"SUB  ", ErrSyntax},
		{"UNSUB", ErrSyntax},
		{"SUB 007!", ErrSyntax},
		{"SUB a/b", ErrSyntax},
		{"SUB " + strings.Repeat("9", MaxSymbolLen+1), ErrSyntax},
		{"SUB **", ErrSyntax},
		{"SUB 00700 \x00", ErrSyntax},
		{"SUB\t00700", ErrUnknownType},
		{"sub 00700", ErrUnknownType},
		{"SUBX 00700", ErrUnknownType},
		{"HELO x", ErrUnknownType},
		{"HELLO", ErrSyntax},
		{"HELLO a 1 2", ErrSyntax},
		{"ALERT a 700 last >=", ErrSyntax},
		{"ALERT a 700 last >= 1 repeat 1 x", ErrSyntax},
		{"UNALERT", ErrSyntax},
		{"ALERTS x", ErrSyntax},
		{"\xff\xfe garbage", ErrUnknownType},
		{"RESUME", ErrSyntax},
		{"RESUME 5", ErrSyntax},
		{"RESUME 0 00700", ErrSyntax},
		{"RESUME -1 00700", ErrSyntax},
		{"RESUME x 00700", ErrSyntax},
		{"RESUME 18446744073709551616 00700", ErrSyntax},
		{"RESUME 5 !", ErrSyntax},
		{"PING x", ErrSyntax},
		{"TIME", ErrSyntax},
		{"TIME 1 2", ErrSyntax},
		{"TIME x", ErrSyntax},
		{"TIME 9223372036854775808", ErrSyntax},
		{"TIME +1", ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			_, err := ParseCommand([]byte(tt.line), nil)
			wantErr(t, err, tt.kind)
		})
	}
}

func TestNextLine(t *testing.T) {
	long := strings.Repeat("a", MaxLineLen-1)
	tests := []struct {
		name string
		buf  string
		line string
		n    int
	}{
		{"simple", "PING\nSUB x\n", "PING", 5},
		{"crlf", "PING\r\nrest", "PING", 6},
		{"empty line", "\nPING\n", "", 1},
		{"only cr", "\r\n", "", 2},
		{"inner cr kept", "a\rb\n", "a\rb", 4},
		{"max length", long + "\n", long, MaxLineLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k := 0; k < tt.n; k++ { // every split before the newline
				if l, n, err := NextLine([]byte(tt.buf[:k])); err != ErrShort || n != 0 || l != nil {
					t.Fatalf("prefix %d: %q %d %v", k, l, n, err)
				}
			}
			l, n, err := NextLine([]byte(tt.buf))
			if err != nil || string(l) != tt.line || n != tt.n {
				t.Fatalf("got %q %d %v, want %q %d", l, n, err, tt.line, tt.n)
			}
		})
	}
	for _, buf := range []string{long + "a", long + "a\n", long + "aaaa\n", strings.Repeat("x", 3*MaxLineLen)} {
		_, n, err := NextLine([]byte(buf))
		if n != 0 {
			t.Fatal(n)
		}
		wantErr(t, err, ErrTooLarge)
	}
}

func TestOKLines(t *testing.T) {
	tests := []struct {
		verb string
		sym  []byte
		seq  uint64
		line string
	}{
		{CmdSub, []byte("00700"), 42, "OK SUB 00700 42 9\n"},
		{CmdSub, []byte("*"), 0, "OK SUB * 0 9\n"},
		{CmdUnsub, []byte("00700"), 0, "OK UNSUB 00700\n"},
		{CmdUnsub, []byte("00700"), 99, "OK UNSUB 00700\n"},
		{CmdResume, nil, 1<<64 - 1, "OK RESUME 18446744073709551615 9\n"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			line := AppendOK([]byte("x"), tt.verb, tt.sym, tt.seq, 9)[1:]
			if e := OKEpoch(line); (e == 9) != (tt.verb != CmdUnsub) {
				t.Fatalf("OKEpoch = %d", e)
			}
			if string(line) != tt.line {
				t.Fatalf("AppendOK = %q", line)
			}
			if KindOf(line) != LineOK {
				t.Fatal("KindOf")
			}
			for _, l := range [][]byte{line, line[:len(line)-1]} {
				verb, sym, seq, err := ParseOK(l)
				wantSeq := tt.seq
				if tt.verb == CmdUnsub {
					wantSeq = 0
				}
				if err != nil || verb != tt.verb || sym != string(tt.sym) || seq != wantSeq {
					t.Fatalf("ParseOK(%q) = %q %q %d %v", l, verb, sym, seq, err)
				}
			}
		})
	}
	for _, bad := range []string{"", "OK", "OK SUB", "OK SUB x", "OK SUB x y", "OK SUB x 1 2 3", "OK SUB x 1 4294967296", "OK UNSUB", "OK UNSUB x 1",
		"OK RESUME", "OK RESUME x", "OK RESUME 1 2 3", "OK PING x", "ERR SUB x 1", "ok SUB x 1", "OK SUB x -1"} {
		_, _, _, err := ParseOK([]byte(bad))
		wantErr(t, err, ErrSyntax)
	}
}

func TestTimeLines(t *testing.T) {
	for _, tt := range [][3]int64{{0, 0, 0}, {1, -2, 3}, {-1 << 63, 1<<63 - 1, 1_700_000_000_000_000_000}} {
		line := AppendTimeLine(nil, tt[0], tt[1], tt[2])
		if KindOf(line) != LineTime || line[len(line)-1] != '\n' {
			t.Fatalf("%q", line)
		}
		t0, t1, t2, err := ParseTimeLine(line)
		if err != nil || [3]int64{t0, t1, t2} != tt {
			t.Fatalf("%q: %d %d %d %v", line, t0, t1, t2, err)
		}
	}
	for _, bad := range []string{"", "TIME", "TIME 1 2", "TIME 1 2 3 4", "TIME a 2 3", "TIME 1 2 9223372036854775808", "time 1 2 3"} {
		_, _, _, err := ParseTimeLine([]byte(bad))
		wantErr(t, err, ErrSyntax)
	}
}

func TestAppendErr(t *testing.T) {
	tests := []struct {
		code, reason, want string
	}{
		{ErrCodeBadCommand, "unknown verb", "ERR BADCMD unknown verb\n"},
		{ErrCodeBadArg, "a\nb\rc", "ERR BADARG a b c\n"},
		{ErrCodeTooLong, "", "ERR TOOLONG \n"},
		{ErrCodeGone, "seq 5 < 10", "ERR GONE seq 5 < 10\n"},
	}
	for _, tt := range tests {
		got := AppendErr(nil, tt.code, tt.reason)
		if string(got) != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if KindOf(got) != LineErr || bytes.Count(got, []byte{'\n'}) != 1 {
			t.Errorf("%q: kind %d", got, KindOf(got))
		}
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		line string
		want LineKind
	}{
		{"OK SUB x 1", LineOK},
		{"ERR SLOW too slow", LineErr},
		{"PONG", LinePong},
		{"PONG\n", LinePong},
		{"PONG\r\n", LinePong},
		{"TIME 1 2 3", LineTime},
		{"REDELIVER g 12", LineRedeliver},
		{"TR 1 00700 ...", LineFrame},
		{"BK 1", LineFrame},
		{"", LineUnknown},
		{"OK", LineUnknown},
		{"PONGX", LineUnknown},
		{"TR", LineUnknown},
		{"TR ", LineUnknown},
		{"XX 1 2", LineUnknown},
		{"TRX 1", LineUnknown},
		{"\xff\x00", LineUnknown},
	}
	for _, tt := range tests {
		if got := KindOf([]byte(tt.line)); got != tt.want {
			t.Errorf("KindOf(%q) = %d, want %d", tt.line, got, tt.want)
		}
	}
}

func TestValidSymbol(t *testing.T) {
	for _, s := range []string{"*", "0", "00700", "a.B_c-9", strings.Repeat("z", MaxSymbolLen)} {
		if !ValidSymbol([]byte(s)) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"", "**", " ", "a b", "a*", "é", strings.Repeat("z", MaxSymbolLen+1)} {
		if ValidSymbol([]byte(s)) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestResetLine(t *testing.T) {
	r := ResetLine{Epoch: 1<<32 - 1, Seq: 1, Prev: 7, PrevLast: 12345}
	line := AppendResetLine(nil, r)
	if string(line) != "RESET 4294967295 1 7 12345\n" || KindOf(line) != LineReset {
		t.Fatalf("%q", line)
	}
	if got, err := ParseResetLine(line); err != nil || got != r {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"RESET", "RESET 1 2 3", "RESET 1 2 3 x", "RESET 4294967296 1 1 1", "RESET 1 2 3 4 5"} {
		if _, err := ParseResetLine([]byte(bad)); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
	// An old-style OK (no epoch) still parses, with epoch 0.
	if v, s, seq, err := ParseOK([]byte("OK SUB 00001 42")); err != nil || v != CmdSub || s != "00001" || seq != 42 || OKEpoch([]byte("OK SUB 00001 42")) != 0 {
		t.Fatal(v, s, seq, err)
	}
}

func TestResumeEpoch(t *testing.T) {
	c, err := ParseCommand([]byte("RESUME 2026120701:42 00001"), nil)
	if err != nil || c.Epoch != 2026120701 || c.Seq != 42 || len(c.Symbols) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ParseCommand([]byte("RESUME 42 00001"), nil); err != nil || c.Epoch != 0 || c.Seq != 42 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"RESUME :42 1", "RESUME 0:42 1", "RESUME 4294967296:1 1", "RESUME 1: 1", "RESUME 1:0 1", "RESUME 4294967296 1", "RESUME 1:2:3 1"} {
		if _, err := ParseCommand([]byte(bad), nil); !errors.Is(err, ErrSyntax) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
