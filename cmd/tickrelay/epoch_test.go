package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/internal/pgtest"
	"tickrelay/root"
	"tickrelay/root/backup"
	"tickrelay/root/journal"
	"tickrelay/wire"
)

// epochPlan is what the exchanges of TestEpochsEndToEnd publish: per
// epoch, its last seq, and the exchange that holds it.
type epochPlan struct {
	epoch uint32
	last  uint64
	ex    *feed.Server
}

// TestEpochsEndToEnd: exchange -> A/B roots (journals) -> 2 children ->
// clients, across three epoch changes: a mid-day Sequence Reset, an
// exchange restart that starts a new day, and another reset. Every client
// sees RESET at each change with where the last epoch ended, then every
// seq of the new epoch once, in order, each frame what the exchange sent;
// a root serves a Hello in an old epoch from its journal across the later
// ones; the Postgres backup holds every item of every epoch once.
func TestEpochsEndToEnd(t *testing.T) {
	const (
		day1, reset1, total1 = 1_000, 1500, 3000 // epochs day1 (1..1500), day1+1 (1..1500)
		day2, reset2, total2 = 2_000, 1000, 2500 // epochs day2 (1..1000), day2+1 (1..1500)
		symbols              = 20
	)
	startEx := func(addr string, epoch uint32, resetAt, total uint64) (*feed.Server, func()) {
		cfg := feed.DefaultConfig()
		cfg.Addr, cfg.Rate, cfg.Symbols, cfg.Seed = addr, 5000, symbols, 7
		cfg.Epoch, cfg.ResetAt, cfg.MaxSeq = epoch, resetAt, total
		cfg.Heartbeat, cfg.Logger = 100*time.Millisecond, testLogger()
		ex, err := feed.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return ex, daemontest.Start(t, "exchange", ex)
	}
	ex1, stopEx1 := startEx("127.0.0.1:0", day1, reset1, total1)
	journals := make([]*journal.Journal, 2)
	roots := make([]*root.Root, 2)
	for i := range roots {
		j, err := journal.Open(filepath.Join(t.TempDir(), "root.journal"), journal.Options{SyncPolicy: journal.SyncNone, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		journals[i] = j
		cfg := newRootConfig(ex1.Addr())
		cfg.Store = j
		roots[i], _ = startRoot(t, cfg)
	}
	children := make([]*child.Child, 2)
	for i := range children {
		children[i], _ = startChild(t, roots[0].Addr(), fmt.Sprintf("c%d", i), 1, roots[1].Addr())
	}
	for _, ch := range children {
		waitFor(t, "the first epoch at a child", 20*time.Second, func() bool { return ch.Epoch() == day1 })
	}

	// Clients: on each child two on "*" and one on two named symbols.
	type seen struct {
		mu    sync.Mutex
		lines []client.Event
		err   error
	}
	var (
		logs  []*seen
		named []bool
	)
	for _, ch := range children {
		for k := range 3 {
			c, err := client.Dial(t.Context(), ch.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			syms := []string{wire.AllSymbols}
			if k == 2 {
				syms = []string{"00003", "00011"}
			}
			if err := c.Sub(syms...); err != nil {
				t.Fatal(err)
			}
			s := &seen{}
			go func() {
				for {
					c.Conn().SetReadDeadline(time.Now().Add(30 * time.Second))
					ev, err := c.Next()
					s.mu.Lock()
					if err != nil {
						s.err = err
						s.mu.Unlock()
						return
					}
					ev.Line = append([]byte(nil), ev.Line...)
					s.lines = append(s.lines, *ev)
					s.mu.Unlock()
				}
			}()
			logs, named = append(logs, s), append(named, k == 2)
		}
	}

	at := func(epoch uint32, seq uint64) func() bool {
		return func() bool {
			for _, ch := range children {
				if ch.Epoch() != epoch || ch.LastSeq() != seq {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "day 1 after its reset at the children", 30*time.Second, at(day1+1, total1-reset1))
	exAddr := ex1.Addr().String()
	stopEx1()
	ex2, _ := startEx(exAddr, day2, reset2, total2) // the next day: a new process
	waitFor(t, "day 2 after its reset at the children", 30*time.Second, at(day2+1, total2-reset2))
	plan := []epochPlan{{day1, reset1, ex1}, {day1 + 1, total1 - reset1, ex1}, {day2, reset2, ex2}, {day2 + 1, total2 - reset2, ex2}}

	// Every client: each epoch's seqs once, in order, RESET between them.
	last := plan[len(plan)-1]
	for i, s := range logs {
		waitFor(t, "a client's last frame", 20*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, ev := range s.lines {
				if ev.Kind == wire.LineFrame && ev.Seq == last.last {
					return true
				}
			}
			return s.err != nil || named[i]
		})
		if named[i] { // its symbols' last updates: give it a moment more
			time.Sleep(200 * time.Millisecond)
		}
		s.mu.Lock()
		err := checkEpochStream(s.lines, plan, named[i])
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}

	// A root serves a child's Hello in the first epoch from its journal,
	// across every later epoch, with a Reset at each boundary.
	if err := checkRelayFrom(t, roots[0].Addr(), plan, 1000); err != nil {
		t.Fatal(err)
	}

	// The backup holds every item of every epoch once.
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	bcfg := backup.DefaultConfig()
	bcfg.DSN, bcfg.Source, bcfg.Logger = dsn, journals[0], testLogger()
	b, err := backup.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, p := range plan {
		var n, distinct, lo, hi int64
		if err := conn.QueryRow(t.Context(), "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM tickrelay_items WHERE epoch = $1",
			int64(p.epoch)).Scan(&n, &distinct, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != int64(p.last) || distinct != n || lo != 1 || hi != int64(p.last) {
			t.Fatalf("backup of epoch %d: %d rows (%d distinct) %d..%d, want 1..%d", p.epoch, n, distinct, lo, hi, p.last)
		}
	}
}

// checkEpochStream checks a client's lines against plan: the image of the
// first epoch up to its OK (all its OKs name the first epoch), then each
// epoch's frames in order without gap or repeat (a named client: its
// symbols' frames), a RESET between epochs naming the one before and its
// end, and every frame what the exchange sent.
func checkEpochStream(lines []client.Event, plan []epochPlan, named bool) error {
	k, next, oks := 0, uint64(0), 0 // plan index; next seq due (0: in the image)
	var want wire.Msg
	for _, ev := range lines {
		switch ev.Kind {
		case wire.LineOK:
			_, _, seq, err := ev.OK()
			if err != nil || k != 0 || wire.OKEpoch(ev.Line) != plan[0].epoch {
				return fmt.Errorf("line %q in epoch %d (%v)", ev.Line, plan[k].epoch, err)
			}
			if oks++; next == 0 || seq+1 > next {
				next = seq + 1
			}
		case wire.LineReset:
			r, err := wire.ParseResetLine(ev.Line)
			if err != nil || k+1 >= len(plan) || r.Prev != plan[k].epoch || r.PrevLast != plan[k].last || r.Epoch != plan[k+1].epoch || r.Seq != 1 {
				return fmt.Errorf("%q after epoch %d up to %d (%v)", ev.Line, plan[k].epoch, next-1, err)
			}
			if !named && next != plan[k].last+1 {
				return fmt.Errorf("%q: epoch %d ended at %d for this client", ev.Line, plan[k].epoch, next-1)
			}
			k, next = k+1, 1
		case wire.LineFrame:
			if oks == 0 || named && oks < 2 {
				continue // the first epoch's images
			}
			if ev.Seq < next || !named && ev.Seq != next {
				return fmt.Errorf("epoch %d: seq %d, want %d", plan[k].epoch, ev.Seq, next)
			}
			body, ok := plan[k].ex.BodyOf(plan[k].epoch, ev.Seq)
			if !ok {
				return fmt.Errorf("epoch %d seq %d: not in the exchange's history", plan[k].epoch, ev.Seq)
			}
			if _, err := wire.DecodeMsg(body, &want); err != nil || want != ev.Msg {
				return fmt.Errorf("epoch %d seq %d: got %+v, exchange sent %+v (%v)", plan[k].epoch, ev.Seq, ev.Msg, want, err)
			}
			next = ev.Seq + 1
		default:
			return fmt.Errorf("unexpected %q", ev.Line)
		}
	}
	if k != len(plan)-1 || !named && next != plan[k].last+1 {
		return fmt.Errorf("ended in epoch %d at seq %d, want epoch %d at %d", plan[k].epoch, next-1, plan[len(plan)-1].epoch, plan[len(plan)-1].last)
	}
	return nil
}

// checkRelayFrom dials the root as a child asking for plan[0]'s epoch from
// seq from and checks the stream: every later item of every epoch of plan
// in order, a Reset at each boundary.
func checkRelayFrom(t *testing.T, addr net.Addr, plan []epochPlan, from uint64) error {
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(wire.AppendHello(nil, wire.Hello{Epoch: plan[0].epoch, FromSeq: from, Name: "old"})); err != nil {
		return err
	}
	k, next := 0, from
	buf, r, w := make([]byte, 1<<22), 0, 0
	var br wire.BatchReader
	for k < len(plan)-1 || next <= plan[k].last {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, p, n, err := wire.NextRelayFrame(buf[r:w])
		if err == wire.ErrShort {
			if r > 0 {
				w, r = copy(buf, buf[r:w]), 0
			}
			m, err := c.Read(buf[w:])
			if err != nil {
				return fmt.Errorf("relay from epoch %d seq %d: at epoch %d seq %d: %w", plan[0].epoch, from, plan[k].epoch, next, err)
			}
			w += m
			continue
		}
		if err != nil {
			return err
		}
		r += n
		switch typ {
		case wire.RelayReset:
			rs := wire.ParseReset(p)
			if k+1 >= len(plan) || rs.Prev != plan[k].epoch || rs.PrevLast != plan[k].last || next != plan[k].last+1 || rs.Epoch != plan[k+1].epoch || rs.Seq != 1 {
				return fmt.Errorf("reset %+v at epoch %d seq %d", rs, plan[k].epoch, next)
			}
			k, next = k+1, 1
		case wire.RelayBatch:
			br.Reset(p)
			for br.Next() {
				if br.Epoch != plan[k].epoch || br.Item.Seq != next {
					return fmt.Errorf("batch of epoch %d, seq %d: want epoch %d seq %d", br.Epoch, br.Item.Seq, plan[k].epoch, next)
				}
				next++
			}
			if err := br.Err(); err != nil {
				return err
			}
		case wire.RelayError:
			return wire.ParseRelayError(p)
		}
	}
	return nil
}
