package child

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"tickrelay/internal/feedtest"
	"tickrelay/wire"
)

// fakeRoot is a minimal root speaking the relay protocol on a real socket.
type fakeRoot struct {
	t      *testing.T
	ln     net.Listener
	hellos chan wire.Hello

	mu     sync.Mutex
	head   uint64
	oldest uint64                  // FromSeq below this gets Error SeqGone
	future bool                    // FromSeq past head+1 gets Error SeqFuture (as a real root), not a wait
	dropAt uint64                  // close the connection right after sending this seq (once)
	gapAt  uint64                  // skip this seq (once)
	batch  int                     // items per batch
	silent bool                    // no heartbeats when idle
	body   func(seq uint64) []byte // the feed body of seq (feedtest.Body)
	down   bool                    // off the network: connections are closed at once
	more   chan struct{}           // closed on publish
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newFakeRoot(t *testing.T) *fakeRoot {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRoot{t: t, ln: ln, hellos: make(chan wire.Hello, 100), batch: 7, body: feedtest.Body, more: make(chan struct{}), conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *fakeRoot) addr() string { return r.ln.Addr().String() }

func (r *fakeRoot) publish(n uint64) {
	r.mu.Lock()
	r.head += n
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

func (r *fakeRoot) set(f func(r *fakeRoot)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

// setDown takes the root off the network (its relay connections closed,
// new ones refused) or puts it back.
func (r *fakeRoot) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	if down {
		for c := range r.conns {
			c.Close()
		}
	}
	r.mu.Unlock()
}

func (r *fakeRoot) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.down {
			r.mu.Unlock()
			c.Close()
			continue
		}
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() {
				c.Close()
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
			}()
			r.serve(c)
		}()
	}
}

// readFrames reads relay frames from c and calls fn for each.
func readFrames(c net.Conn, fn func(typ byte, p []byte) bool) error {
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 64<<10)
	for {
		for {
			typ, p, n, err := wire.NextRelayFrame(buf)
			if errors.Is(err, wire.ErrShort) {
				break
			}
			if err != nil {
				return err
			}
			if !fn(typ, p) {
				return nil
			}
			buf = buf[n:]
		}
		n, err := c.Read(tmp)
		if err != nil {
			return err
		}
		buf = append(append([]byte(nil), buf...), tmp[:n]...)
	}
}

func (r *fakeRoot) serve(c net.Conn) {
	var hello wire.Hello
	if err := readFrames(c, func(typ byte, p []byte) bool {
		if typ == wire.RelayHello {
			hello = wire.ParseHello(p)
		}
		return typ != wire.RelayHello
	}); err != nil {
		return
	}
	r.hellos <- hello
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := c.Write(b)
		return err
	}
	gone := make(chan struct{}) // closed when the child's side ends
	go func() {
		defer close(gone)
		readFrames(c, func(typ byte, p []byte) bool { // answer clock requests
			if typ == wire.RelayTimeReq {
				now := time.Now().UnixNano()
				write(wire.AppendTimeReply(nil, wire.ParseTimeReq(p), now, now+1000))
			}
			return true
		})
	}()
	r.mu.Lock()
	oldest, body, head, future := r.oldest, r.body, r.head, r.future
	r.mu.Unlock()
	if hello.FromSeq < oldest {
		write(wire.AppendRelayError(nil, wire.RelayErr{Code: wire.CodeSeqGone, Seq: oldest, Reason: "seq gone"}))
		return
	}
	if future && hello.FromSeq > head+1 {
		write(wire.AppendRelayError(nil, wire.RelayErr{Code: wire.CodeSeqFuture, Seq: head, Reason: "beyond head"}))
		return
	}
	cursor := hello.FromSeq
	for {
		r.mu.Lock()
		head, more, silent := r.head, r.more, r.silent
		drop := false
		if cursor == r.gapAt && cursor <= head {
			r.gapAt = 0
			cursor++
		}
		end := min(cursor+uint64(r.batch)-1, head)
		if r.gapAt > cursor && end >= r.gapAt {
			end = r.gapAt - 1
		}
		if r.dropAt >= cursor && r.dropAt <= end {
			end, drop, r.dropAt = r.dropAt, true, 0
		}
		r.mu.Unlock()
		if cursor > head {
			select {
			case <-gone:
				return
			case <-more:
			case <-time.After(100 * time.Millisecond):
				if !silent && write(wire.AppendHeartbeatFrame(nil, head, time.Now().UnixNano())) != nil {
					return
				}
			}
			continue
		}
		send := time.Now().UnixNano()
		b, at := wire.BeginBatch(nil, 0, send)
		for s := cursor; s <= end; s++ {
			b = wire.AppendRelayItem(b, send-1000, body(s))
		}
		b = wire.EndBatch(b, at, int(end-cursor+1))
		if write(b) != nil {
			return
		}
		cursor = end + 1
		if drop {
			return
		}
	}
}
