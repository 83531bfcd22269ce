package wire

import (
	"testing"
)

// feedStream returns n data frames cycling through every message type.
func feedStream(n int) []byte {
	msgs := sampleMsgs()
	var buf []byte
	for i := 0; i < n; i++ {
		buf, _ = AppendMsgFrame(buf, uint64(i+1), int64(i), &msgs[i%len(msgs)])
	}
	return buf
}

func BenchmarkFeedDecode(b *testing.B) {
	const frames = 1000
	stream := feedStream(frames)
	var m Msg
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		buf := stream
		n := 0
		for len(buf) > 0 {
			body, used, err := NextFeedFrame(buf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := DecodeMsg(body, &m); err != nil {
				b.Fatal(err)
			}
			buf = buf[used:]
			n++
		}
		if n != frames {
			b.Fatal(n)
		}
	}
	perItem(b, frames)
}

// perItem reports the time per item next to the time per op.
func perItem(b *testing.B, items int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*items), "ns/item")
}

// itemsOf returns feed bodies for seqs 1..n.
func itemsOf(n int) [][]byte {
	return splitFeed(feedStream(n))
}

func splitFeed(stream []byte) [][]byte {
	var out [][]byte
	for len(stream) > 0 {
		body, n, err := NextFeedFrame(stream)
		if err != nil {
			panic(err)
		}
		out = append(out, body)
		stream = stream[n:]
	}
	return out
}

const batchItems = 64

func BenchmarkRelayBatchEncode(b *testing.B) {
	bodies := itemsOf(batchItems)
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		var at int
		buf, at = BeginBatch(buf[:0], 0, 1000)
		for i, body := range bodies {
			buf = AppendRelayItem(buf, int64(i), body)
		}
		buf = EndBatch(buf, at, len(bodies))
		size = len(buf)
	}
	b.SetBytes(int64(size))
	perItem(b, len(bodies))
}

func BenchmarkBatchRead(b *testing.B) {
	bodies := itemsOf(batchItems)
	frame, at := BeginBatch(nil, 0, 1000)
	for i, body := range bodies {
		frame = AppendRelayItem(frame, int64(i), body)
	}
	frame = EndBatch(frame, at, len(bodies))
	var r BatchReader
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		_, p, _, err := NextRelayFrame(frame)
		if err != nil {
			b.Fatal(err)
		}
		r.Reset(p)
		n := 0
		for r.Next() {
			n++
		}
		if r.Err() != nil || n != batchItems {
			b.Fatal(n, r.Err())
		}
	}
	perItem(b, batchItems)
}

func BenchmarkTextFrame(b *testing.B) {
	bodies := itemsOf(len(sampleMsgs()))
	buf := make([]byte, 0, MaxTextFrame)
	var m Msg
	st := Stamps{1_700_000_000_000_000_000, 1_700_000_000_000_000_001, 1_700_000_000_000_000_002, 1_700_000_000_000_000_003, 0}
	b.ReportAllocs()
	total := 0
	for b.Loop() {
		total = 0
		for i, body := range bodies {
			if _, err := DecodeMsg(body, &m); err != nil {
				b.Fatal(err)
			}
			buf = AppendTextFrame(buf[:0], uint64(i+1), &m, st)
			SetChildSend(buf, 1_700_000_000_000_000_004)
			total += len(buf)
		}
	}
	b.SetBytes(int64(total))
	perItem(b, len(bodies))
}

func BenchmarkParseCommand(b *testing.B) {
	lines := []byte("SUB 00700 00005 00388 02800\r\nRESUME 12345 00700\nUNSUB 00005\nPING\nTIME 1700000000000000000\n")
	syms := make([][]byte, 0, 8)
	b.ReportAllocs()
	b.SetBytes(int64(len(lines)))
	for b.Loop() {
		buf := lines
		for len(buf) > 0 {
			line, n, err := NextLine(buf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ParseCommand(line, syms); err != nil {
				b.Fatal(err)
			}
			buf = buf[n:]
		}
	}
}

// TestHotPathsAllocateNothing pins the zero-allocation claims without
// running the benchmarks.
func TestHotPathsAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates; run without -race")
	}
	stream := feedStream(len(sampleMsgs()))
	bodies := splitFeed(stream)
	var m Msg
	buf := make([]byte, 0, 64<<10)
	syms := make([][]byte, 0, 8)
	var r BatchReader
	var cmdLines [][]byte
	for _, l := range []string{"SUB 00700 00005", "UNSUB 1", "RESUME 5 00700", "PING", "TIME 5"} {
		cmdLines = append(cmdLines, []byte(l+"\n"))
	}
	cases := map[string]func(){
		"feed decode": func() {
			for rest := stream; len(rest) > 0; {
				body, n, _ := NextFeedFrame(rest)
				DecodeMsg(body, &m)
				rest = rest[n:]
			}
		},
		"msg encode": func() {
			buf = buf[:0]
			for i := range bodies {
				DecodeMsg(bodies[i], &m)
				buf, _ = AppendMsgFrame(buf, uint64(i+1), 0, &m)
			}
		},
		"batch encode+read": func() {
			var at int
			buf, at = BeginBatch(buf[:0], 0, 100)
			for _, body := range bodies {
				buf = AppendRelayItem(buf, 1, body)
			}
			buf = EndBatch(buf, at, len(bodies))
			_, p, _, _ := NextRelayFrame(buf)
			for r.Reset(p); r.Next(); {
			}
		},
		"text": func() {
			for _, body := range bodies {
				DecodeMsg(body, &m)
				buf = AppendTextFrame(buf[:0], 1, &m, Stamps{})
				SetChildSend(buf, 5)
				DecodeTextFrame(buf, &m)
			}
		},
		"commands": func() {
			for _, l := range cmdLines {
				line, _, _ := NextLine(l)
				ParseCommand(line, syms)
				KindOf(line)
			}
		},
		"server lines": func() {
			buf = AppendOK(buf[:0], CmdSub, []byte("00700"), 5, 2026120700)
			buf = AppendErr(buf, ErrCodeBadArg, "bad")
			buf = AppendTimeLine(buf, 1, 2, 3)
			buf = AppendHeartbeatFrame(buf, 1, 2)
			buf = AppendTimeReply(buf, 1, 2, 3)
		},
	}
	for name, fn := range cases {
		if a := testing.AllocsPerRun(20, fn); a != 0 {
			t.Errorf("%s: %.1f allocs per run, want 0", name, a)
		}
	}
}
