package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"tickrelay/child/client"
)

// Stalled is a set of tickrelay connections that subscribe and never read:
// the slow consumers of `tickrelay perf`'s slow-consumer step.
type Stalled struct {
	mu    sync.Mutex
	conns []net.Conn
}

// StallRecvBuffer is a stalled connection's receive buffer (SO_RCVBUF, set
// before the handshake so the window stays small): it fills at once.
const StallRecvBuffer = 4096

// Stall dials n connections over addrs (connection i to addrs[i%len]),
// each sending line (e.g. "SUB *") and then reading nothing.
func Stall(ctx context.Context, addrs []string, n int, line string) (*Stalled, error) {
	if len(addrs) == 0 {
		return nil, errors.New("harness: Stall: no addresses")
	}
	s := &Stalled{}
	for i := range n {
		c, err := client.DialConn(ctx, addrs[i%len(addrs)], StallRecvBuffer)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("harness: stalled conn %d: %w", i, err)
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			s.Close()
			return nil, fmt.Errorf("harness: stalled conn %d: %w", i, err)
		}
	}
	return s, nil
}

// Close closes every connection.
func (s *Stalled) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}
