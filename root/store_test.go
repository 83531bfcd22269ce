package root

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"tickrelay/wire"
)

// memStore is an in-memory Store holding the contiguous seqs [first, last].
type memStore struct {
	mu    sync.Mutex
	first uint64
	items [][]byte // items[i] is seq first+i
}

func (s *memStore) Append(seq uint64, rootRecv int64, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == 0 {
		s.first = seq
	} else if want := s.first + uint64(len(s.items)); seq != want {
		return fmt.Errorf("memstore: append %d, want %d", seq, want)
	}
	s.items = append(s.items, wire.AppendRelayItem(nil, rootRecv, body))
	return nil
}

func (s *memStore) LastSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.items) == 0 {
		return 0
	}
	return s.first + uint64(len(s.items)) - 1
}

func (s *memStore) Range(from uint64, fn func(seq uint64, item []byte) bool) error {
	s.mu.Lock()
	first, items := s.first, s.items
	s.mu.Unlock()
	if from < first {
		from = first
	}
	for seq := from; seq < first+uint64(len(items)); seq++ {
		if !fn(seq, items[seq-first]) {
			return nil
		}
	}
	return nil
}

// dropBefore forgets seqs < seq (retention).
func (s *memStore) dropBefore(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = s.items[seq-s.first:]
	s.first = seq
}

// TestStoreCatchUp: a child older than the ring is served from the Store,
// then handed over to the ring while items keep arriving.
func TestStoreCatchUp(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.RingSize = 256
	st := &memStore{}
	cfg.Store = st
	r, _ := startRoot(t, cfg)
	ex.publish(3000)
	waitHead(t, r, 3000)
	if st.LastSeq() != 3000 {
		t.Fatalf("store last %d", st.LastSeq())
	}
	a := dialChild(t, r.Addr(), 1)
	b := dialChild(t, r.Addr(), 2000)
	ex.publish(6000) // live items while the children catch up
	if err := a.readTo(6000, ioTimeout); err != nil {
		t.Fatal("child a:", err)
	}
	if err := b.readTo(6000, ioTimeout); err != nil {
		t.Fatal("child b:", err)
	}
	// Retention: the store no longer has seq 1; the oldest is 500.
	st.dropBefore(500)
	c := dialChild(t, r.Addr(), 1)
	e, err := c.expectError(ioTimeout)
	if err != nil || e.Code != wire.CodeSeqGone || e.Seq != 500 {
		t.Fatalf("from 1 with store [500..]: got %+v, %v; want SeqGone 500", e, err)
	}
}

// TestRestartFromStore: a new root over the same Store refills its ring and
// logs in from the Store's last seq + 1.
func TestRestartFromStore(t *testing.T) {
	ex := newFakeExchange(t)
	st := &memStore{}
	cfg := testConfig(t, ex)
	cfg.Store = st
	r1, stop1 := startRoot(t, cfg)
	ex.publish(700)
	waitHead(t, r1, 700)
	if err := stop1(); err != nil {
		t.Fatal(err)
	}
	for len(ex.logons) > 0 {
		<-ex.logons
	}
	cfg2 := testConfig(t, ex)
	cfg2.Store = st
	cfg2.RingSize = 512
	r2, _ := startRoot(t, cfg2)
	if lg := <-ex.logons; lg.StartSeq != 701 {
		t.Fatalf("restart logon from %d want 701", lg.StartSeq)
	}
	if f := r2.Ring().First(); f != 700-512+1 {
		t.Fatalf("refilled ring first %d want %d", f, 700-512+1)
	}
	c := dialChild(t, r2.Addr(), 1) // older than the ring: from the store
	ex.publish(900)
	if err := c.readTo(900, ioTimeout); err != nil {
		t.Fatal(err)
	}
}

// TestStoreAppendFailureKeepsRelaying: a failing store is logged and
// counted; children still get everything.
func TestStoreAppendFailureKeepsRelaying(t *testing.T) {
	ex := newFakeExchange(t)
	cfg := testConfig(t, ex)
	cfg.Store = failStore{}
	r, _ := startRoot(t, cfg)
	c := dialChild(t, r.Addr(), 1)
	ex.publish(300)
	if err := c.readTo(300, ioTimeout); err != nil {
		t.Fatal(err)
	}
	waitHead(t, r, 300)
}

type failStore struct{}

func (failStore) Append(uint64, int64, []byte) error { return errors.New("disk on fire") }
func (failStore) LastSeq() uint64                    { return 0 }
func (failStore) Range(uint64, func(uint64, []byte) bool) error {
	return errors.New("disk on fire")
}
