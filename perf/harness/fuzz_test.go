package harness

import (
	"errors"
	"testing"
)

// The harness parses what a server sends: arbitrary bytes must give a unit,
// errShort (nothing consumed) or errProto, never a panic or a count past
// the buffer.

func FuzzNextNATS(f *testing.F) {
	f.Add([]byte("MSG t.00001 1 5\r\nhello\r\nPING\r\n"))
	f.Add([]byte("INFO {}\r\n+OK\r\nPONG\r\n-ERR 'x'\r\n"))
	f.Add([]byte("MSG a 1 99999999999\r\n"))
	f.Add([]byte("MSG a 1 3\r\nab"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		walkUnits(t, buf, func(b []byte) ([]byte, int, error) {
			_, payload, n, err := nextNATS(b)
			return payload, n, err
		})
	})
}

func FuzzNextRESP(f *testing.F) {
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$7\r\nt.00001\r\n$5\r\nhello\r\n"))
	f.Add([]byte("*3\r\n$9\r\nsubscribe\r\n$7\r\nt.00001\r\n:1\r\n+OK\r\n"))
	f.Add([]byte("*3\r\n$-1\r\n"))
	f.Add([]byte("*99999999999\r\n"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		walkUnits(t, buf, func(b []byte) ([]byte, int, error) {
			_, payload, n, err := nextRESP(b)
			return payload, n, err
		})
	})
}

func FuzzFrameStamps(f *testing.F) {
	f.Add([]byte("TR 7 00001 tid=1 px=1.000 qty=1 tt=0 time=0 t=0000000000000000001,0000000000000000002,0000000000000000003,0000000000000000004,0000000000000000005"))
	f.Add([]byte("t="))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, frame []byte) {
		FrameStamps(frame) // must not panic
	})
}

// walkUnits parses units off buf until it ends or next fails, checking
// that each unit stays inside the buffer and errors are the known ones.
func walkUnits(t *testing.T, buf []byte, next func([]byte) ([]byte, int, error)) {
	for len(buf) > 0 {
		payload, n, err := next(buf)
		if err != nil {
			if !errors.Is(err, errShort) && !errors.Is(err, errProto) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if n <= 0 || n > len(buf) || len(payload) > n {
			t.Fatalf("n %d, payload %d, buffer %d", n, len(payload), len(buf))
		}
		buf = buf[n:]
	}
}
