package feed

import (
	"errors"
	"testing"
	"testing/iotest"

	"tickrelay/wire"
)

// chunks feeds its slices one Read at a time.
type chunks [][]byte

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, iotest.ErrTimeout
	}
	n := copy(p, (*c)[0])
	if (*c)[0] = (*c)[0][n:]; len((*c)[0]) == 0 {
		*c = (*c)[1:]
	}
	return n, nil
}

func TestFrameReaderSplitReads(t *testing.T) {
	var stream []byte
	stream = wire.AppendHeartbeat(stream, 1, 5)
	stream = wire.AppendLogonReply(stream, wire.LogonReply{Status: wire.LogonOK, NextSeq: 1})
	g := NewGenerator(GenConfig{Seed: 3, Symbols: 10})
	var m wire.Msg
	for seq := uint64(1); seq <= 500; seq++ {
		g.Next(&m)
		stream, _ = wire.AppendMsgFrame(stream, seq, int64(seq), &m)
	}
	// One byte, then 7, then the rest in odd pieces: frames span reads.
	var in chunks
	for rest, n := stream, 1; len(rest) > 0; n = n*2 + 5 {
		n = min(n, len(rest))
		in, rest = append(in, rest[:n]), rest[n:]
	}
	r := NewFrameReader(0)
	reply, err := r.ReadLogonReply(&in)
	if err != nil || reply.Status != wire.LogonOK || reply.NextSeq != 1 {
		t.Fatalf("logon reply %+v, %v", reply, err)
	}
	for want := uint64(1); want <= 500; {
		_, body, err := r.Next()
		if errors.Is(err, wire.ErrShort) {
			if err := r.Fill(&in); err != nil {
				t.Fatalf("fill at seq %d: %v", want, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := wire.ParseFeedBody(body); h.Seq != want {
			t.Fatalf("seq %d, want %d", h.Seq, want)
		}
		want++
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes left", r.Buffered())
	}
}

func TestReadLogonReplyRejects(t *testing.T) {
	data := wire.AppendFeedFrame(nil, 7, 1, wire.TypeTrade, make([]byte, 28))
	in := chunks{data}
	if _, err := NewFrameReader(0).ReadLogonReply(&in); !errors.Is(err, ErrNotLogonReply) {
		t.Fatalf("data before the reply: %v", err)
	}
	in = chunks{{0, 0}} // zero length
	if _, err := NewFrameReader(0).ReadLogonReply(&in); !errors.Is(err, wire.ErrEmpty) {
		t.Fatalf("zero length: %v", err)
	}
	in = chunks{{40, 0, 1}} // a partial frame, then the conn times out
	if _, err := NewFrameReader(0).ReadLogonReply(&in); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("truncated: %v", err)
	}
}
