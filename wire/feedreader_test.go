package wire

import (
	"errors"
	"testing"
	"testing/iotest"
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

func TestFeedReaderSplitReads(t *testing.T) {
	var stream []byte
	stream = AppendHeartbeat(stream, 1, 5)
	stream = AppendLogonReply(stream, LogonReply{Status: LogonOK, NextSeq: 1})
	stream = append(stream, feedStream(500)...)
	// One byte, then 7, then the rest in odd pieces: frames span reads.
	var in chunks
	for rest, n := stream, 1; len(rest) > 0; n = n*2 + 5 {
		n = min(n, len(rest))
		in, rest = append(in, rest[:n]), rest[n:]
	}
	r := NewFeedReader(0)
	reply, err := r.ReadLogonReply(&in)
	if err != nil || reply.Status != LogonOK || reply.NextSeq != 1 {
		t.Fatalf("logon reply %+v, %v", reply, err)
	}
	for want := uint64(1); want <= 500; {
		_, body, h, err := r.Next()
		if errors.Is(err, ErrShort) {
			if err := r.Fill(&in); err != nil {
				t.Fatalf("fill at seq %d: %v", want, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if h2, _ := ParseFeedBody(body); h.Seq != want || h2 != h {
			t.Fatalf("seq %d, want %d", h.Seq, want)
		}
		want++
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes left", r.Buffered())
	}
}

func TestReadLogonReplyRejects(t *testing.T) {
	data := AppendFeedFrame(nil, 7, 1, TypeTrade, make([]byte, 28))
	in := chunks{data}
	if _, err := NewFeedReader(0).ReadLogonReply(&in); !errors.Is(err, ErrNotLogonReply) {
		t.Fatalf("data before the reply: %v", err)
	}
	in = chunks{{0, 0}} // zero length
	if _, err := NewFeedReader(0).ReadLogonReply(&in); !errors.Is(err, ErrEmpty) {
		t.Fatalf("zero length: %v", err)
	}
	in = chunks{{40, 0, 1}} // a partial frame, then the conn times out
	if _, err := NewFeedReader(0).ReadLogonReply(&in); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("truncated: %v", err)
	}
}
