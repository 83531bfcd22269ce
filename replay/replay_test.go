package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/internal/pgtest"
	"tickrelay/root/backup"
	"tickrelay/wire"
)

var quiet = slog.New(slog.DiscardHandler)

func startFeed(t testing.TB, maxSeq uint64) *feed.Server {
	t.Helper()
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.MaxSeq, cfg.Retain = "127.0.0.1:0", 200_000, 100, maxSeq, 0
	cfg.Heartbeat = 50 * time.Millisecond
	cfg.Logger = quiet
	s, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "exchange", s)
	return s
}

func startReplay(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "replay", s)
	return s
}

// feedClient is a minimal exchange client for the tests.
type feedClient struct {
	t  testing.TB
	c  net.Conn
	in *wire.FeedReader
}

func logon(t testing.TB, addr net.Addr, user, pass string, start uint64) (*feedClient, wire.LogonReply) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &feedClient{t: t, c: c, in: wire.NewFeedReader(1 << 20)}
	if _, err := c.Write(wire.AppendLogon(nil, wire.Logon{User: user, Password: pass, StartSeq: start})); err != nil {
		t.Fatal(err)
	}
	body, err := f.next()
	if err != nil {
		t.Fatalf("logon reply: %v", err)
	}
	r, err := wire.ParseLogonReply(body)
	if err != nil {
		t.Fatal(err)
	}
	return f, r
}

// next returns the next frame body (deadline 10 s).
func (f *feedClient) next() ([]byte, error) {
	f.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return f.in.ReadFrame(f.c)
}

// nextData skips heartbeats.
func (f *feedClient) nextData() []byte {
	f.t.Helper()
	for {
		body, err := f.next()
		if err != nil {
			f.t.Fatalf("read: %v", err)
		}
		if h, _ := wire.ParseFeedBody(body); h.Seq != 0 {
			return body
		}
	}
}

func record(t testing.TB, exch net.Addr, out string, from, max uint64, during func(*Recorder)) *Recorder {
	t.Helper()
	cfg := DefaultRecordConfig()
	cfg.Exchange, cfg.Out, cfg.FromSeq, cfg.Max = exch.String(), out, from, max
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	cfg.Logger = quiet
	rec, err := NewRecorder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	if during != nil {
		during(rec)
	}
	if err := <-done; err != nil {
		t.Fatalf("record: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("record timed out at %+v", rec.Progress())
	}
	return rec
}

// TestRecordThenServe records a live simulator (dropping its connections
// mid-way: the recorder logs in again from last+1), checks the capture
// holds exactly what the exchange sent, then serves it and checks a client
// logging in at seq N gets exactly the exchange's Body(N..).
func TestRecordThenServe(t *testing.T) {
	const total = 30_000
	exch := startFeed(t, total)
	path := filepath.Join(t.TempDir(), "live.trcap")
	rec := record(t, exch.Addr(), path, 1, total, func(rec *Recorder) {
		for deadline := time.Now().Add(5 * time.Second); rec.Progress().Frames < 5000 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		exch.DropConnections()
	})
	t.Logf("recorded %d frames, %d reconnects", rec.Progress().Frames, rec.Reconnects())
	if rec.Reconnects() == 0 {
		t.Errorf("the dropped connection did not make the recorder log in again")
	}

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if e := exch.Epoch(); !r.Indexed() || r.Records() != total || r.FirstSeq() != wire.Pos(e, 1) || r.LastSeq() != wire.Pos(e, total) {
		t.Fatalf("capture: indexed %v records %d positions %x..%x (epoch %d)", r.Indexed(), r.Records(), r.FirstSeq(), r.LastSeq(), e)
	}
	c := r.Cursor()
	for seq := uint64(1); seq <= total; seq++ {
		_, f, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := exch.Body(seq)
		if !bytes.Equal(f[2:], want) {
			t.Fatalf("capture seq %d differs from the exchange's body", seq)
		}
	}
	src, err := NewCaptureSource(r, Select{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	cfg := DefaultConfig()
	cfg.Source, cfg.Max = src, true
	srv := startReplay(t, cfg)

	// Bad auth is refused; nothing starts.
	if _, rep := logon(t, srv.Addr(), "tickrelay", "wrong", 1); rep.Status != wire.LogonBadAuth {
		t.Fatalf("bad password: %+v", rep)
	}
	// Like the simulator, the replay serves only what it has published: a
	// first client starts playback from seq 1 (StartOnLogon) and reads it
	// all, then a second is served seq N.. by retransmission.
	first, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 1)
	if rep.Status != wire.LogonOK || rep.NextSeq != 1 {
		t.Fatalf("logon: %+v", rep)
	}
	for seq := uint64(1); seq <= total; seq++ {
		if h, _ := wire.ParseFeedBody(first.nextData()); h.Seq != seq {
			t.Fatalf("first client: got seq %d, want %d", h.Seq, seq)
		}
	}
	const from = 12_345
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", from)
	if rep.Status != wire.LogonOK || rep.NextSeq != from {
		t.Fatalf("logon: %+v", rep)
	}
	for seq := uint64(from); seq <= total; seq++ {
		body := cl.nextData()
		want, _ := exch.Body(seq)
		if !bytes.Equal(body, want) {
			h, _ := wire.ParseFeedBody(body)
			t.Fatalf("seq %d: got seq %d, body differs from the exchange's", seq, h.Seq)
		}
	}
	// Then heartbeats announcing the end.
	body, err := cl.next()
	if h, _ := wire.ParseFeedBody(body); err != nil || h.MsgType != wire.TypeHeartbeat || wire.HeartbeatNextSeq(body) != total+1 {
		t.Fatalf("after the end: %v %+v", err, h)
	}
	<-srv.Done()
	sm := srv.Summary()
	if sm.Frames != total || srv.Err() != nil {
		t.Fatalf("summary %v, err %v", sm, srv.Err())
	}
	// Beyond the head: unavailable, as the simulator says it.
	if _, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", total+5); rep.Status != wire.LogonUnavailable || rep.NextSeq != total+1 {
		t.Fatalf("beyond head: %+v", rep)
	}
	t.Logf("summary: %v", sm)
}

func captureFile(t testing.TB, recs []testRecord) *Reader {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.trcap")
	writeCapture(t, path, recs, WriterOptions{FlushRecords: 64}, true)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestServeSelection serves seqs 500..1500: a logon below is told 500 is
// the oldest, a live-edge logon starts at 500, the stream ends at 1500.
func TestServeSelection(t *testing.T) {
	recs := genRecords(2000, 1)
	src, err := NewCaptureSource(captureFile(t, recs), Select{FromSeq: 500, ToSeq: 1500})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if src.Total() != 1001 {
		t.Fatalf("total %d", src.Total())
	}
	cfg := DefaultConfig()
	cfg.Source, cfg.Max = src, true
	srv := startReplay(t, cfg)
	if _, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 100); rep.Status != wire.LogonUnavailable || rep.NextSeq != 500 {
		t.Fatalf("logon at 100: %+v", rep)
	}
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 0)
	if rep.Status != wire.LogonOK || rep.NextSeq != 500 {
		t.Fatalf("live-edge logon: %+v", rep)
	}
	for seq := 500; seq <= 1500; seq++ {
		if body := cl.nextData(); !bytes.Equal(body, recs[seq-1].frame[2:]) {
			t.Fatalf("seq %d differs", seq)
		}
	}
	<-srv.Done()
	if srv.Published() != 1500 {
		t.Fatalf("published %d", srv.Published())
	}

	// By time: the records received in [recv(900), recv(1200)].
	src2, _ := NewCaptureSource(captureFile(t, recs), Select{FromTime: recs[900].recv, ToTime: recs[1200].recv})
	t.Cleanup(func() { src2.Close() })
	var seqs []uint64
	for {
		_, f, err := src2.Next(t.Context())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seqOf(f))
	}
	// Groups of 3 share a receive time: 900 is record 901 of group 300
	// (records 900..902), 1200 ends group 400 (1200..1202).
	if seqs[0] != 901 || seqs[len(seqs)-1] != 1203 {
		t.Fatalf("time selection: seqs %d..%d", seqs[0], seqs[len(seqs)-1])
	}
	// Bounds that select nothing.
	for _, sel := range []Select{{FromTime: recs[1999].recv + 1}, {FromSeq: 5000}, {FromSeq: 10, ToSeq: 20, FromTime: recs[100].recv}} {
		src3, err := NewCaptureSource(captureFile(t, recs), sel)
		if err != nil {
			t.Fatal(err)
		}
		if _, f, err := src3.Next(t.Context()); !errors.Is(err, io.EOF) || src3.FirstSeq() != 0 {
			t.Errorf("%+v: got seq %d, err %v, first %d", sel, seqOf(f), err, src3.FirstSeq())
		}
		src3.Close()
	}
}

// TestServeLoop: each pass continues the seqs (seq + pass*span), bodies
// otherwise verbatim.
func TestServeLoop(t *testing.T) {
	recs := genRecords(100, 1)
	src, _ := NewCaptureSource(captureFile(t, recs), Select{})
	t.Cleanup(func() { src.Close() })
	cfg := DefaultConfig()
	cfg.Source, cfg.Max, cfg.Loop = src, true, true
	srv := startReplay(t, cfg)
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 1)
	if rep.Status != wire.LogonOK {
		t.Fatalf("logon: %+v", rep)
	}
	for seq := uint64(1); seq <= 350; seq++ {
		body := cl.nextData()
		want := bytes.Clone(recs[(seq-1)%100].frame[2:])
		want[0], want[1], want[2], want[3], want[4], want[5], want[6], want[7] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24), 0, 0, 0, 0
		if !bytes.Equal(body, want) {
			t.Fatalf("seq %d differs", seq)
		}
	}
}

// pacedCapture: n records, one every gap (pairs share a receive time).
func pacedCapture(t testing.TB, n int, gap time.Duration) ([]testRecord, *Reader) {
	recs := genRecords(n, 1)
	for i := range recs {
		recs[i].recv = 1_700_000_000_000_000_000 + int64(i/2)*int64(2*gap)
	}
	return recs, captureFile(t, recs)
}

// TestServePacing plays at speed 1 and 10 and measures, at the client,
// arrival offset - scheduled offset for every frame. The bound is loose
// (a shared CI machine): it checks the pacer, not the machine.
func TestServePacing(t *testing.T) {
	for _, tc := range []struct {
		speed float64
		gap   time.Duration
		n     int
		spin  time.Duration
	}{{1, 2 * time.Millisecond, 600, 0}, {10, 20 * time.Millisecond, 600, 0}, {1, 2 * time.Millisecond, 300, time.Millisecond}} {
		t.Run(fmt.Sprintf("speed%v_spin%v", tc.speed, tc.spin), func(t *testing.T) {
			// A stall of the shared machine can push a p99 over 5 ms in
			// one run, and on a bad minute in all three (30-40 ms stalls
			// have been seen here). A broken pacer is off by far more, and
			// at the median too: that fails at once. Under -race the
			// numbers are only logged.
			for attempt := 1; ; attempt++ {
				p50, p99, sm := pacingRun(t, tc.speed, tc.gap, tc.n, tc.spin)
				if raceEnabled {
					break
				}
				if p50 > 2*time.Millisecond || sm.PacingP50 > 2*time.Millisecond || p99 > 100*time.Millisecond || sm.PacingP99 > 100*time.Millisecond {
					t.Errorf("pacing error p50/p99: client %v/%v, server %v/%v; want p50 < 2ms, p99 < 100ms", p50, p99, sm.PacingP50, sm.PacingP99)
					break
				}
				if p99 < 5*time.Millisecond && sm.PacingP99 < 5*time.Millisecond {
					break
				}
				if attempt == 3 {
					t.Logf("p99 pacing error over 5 ms in 3 runs (client %v, server %v) with the median on time: machine stalls", p99, sm.PacingP99)
					break
				}
			}
		})
	}
}

// pacingRun plays n records gap apart at speed and returns the client-side
// p50 and p99 pacing errors and the server's summary.
func pacingRun(t *testing.T, speed float64, gap time.Duration, n int, spin time.Duration) (_, _ time.Duration, sm Summary) {
	recs, r := pacedCapture(t, n, gap)
	src, _ := NewCaptureSource(r, Select{})
	t.Cleanup(func() { src.Close() })
	cfg := DefaultConfig()
	cfg.Source, cfg.Speed, cfg.Spin = src, speed, spin
	srv := startReplay(t, cfg)
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 0)
	if rep.Status != wire.LogonOK || rep.NextSeq != 1 {
		t.Fatalf("logon: %+v", rep)
	}
	// The client cannot see the server's start: the frame that arrived
	// least behind its schedule defines "on time".
	errs := make([]time.Duration, 0, n)
	var t0 time.Time
	for i := range n {
		cl.nextData()
		now := time.Now()
		if i == 0 {
			t0 = now
		}
		sched := time.Duration(float64(recs[i].recv-recs[0].recv) / speed)
		errs = append(errs, now.Sub(t0)-sched)
	}
	slices.Sort(errs)
	for i, m := 0, errs[0]; i < len(errs); i++ {
		errs[i] -= m
	}
	p50, p99, mx := errs[len(errs)/2], errs[len(errs)*99/100], errs[len(errs)-1]
	<-srv.Done()
	sm = srv.Summary()
	t.Logf("client-side pacing error p50 %v p99 %v max %v; server: %v", p50, p99, mx, sm)
	want := float64(n-1) / (float64(recs[n-1].recv-recs[0].recv) / 1e9) * speed
	if sm.RequestedRate < want*0.99 || sm.RequestedRate > want*1.01 {
		t.Errorf("requested rate %v, want %v", sm.RequestedRate, want)
	}
	if sm.Frames != uint64(n) || sm.PacedFrames != int64(n) {
		t.Errorf("summary %+v", sm)
	}
	return p50, p99, sm
}

// TestServePostgres plays rows of the root's backup table, selected by
// exch_send, paced by it at speed 100.
func TestServePostgres(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := backup.Migrate(ctx, conn, "tickrelay_items"); err != nil {
		t.Fatal(err)
	}
	recs := genRecords(3000, 1)
	rows := make([][]any, len(recs))
	for i, r := range recs {
		h, _ := wire.ParseFeedBody(r.frame[2:])
		rows[i] = []any{int64(7), int64(h.Seq), h.SendTime, h.SendTime + 5000, int16(h.MsgType), nil, r.frame[2:]}
	}
	// An older epoch with the same seqs: not played (the newest is).
	for i, r := range recs[:100] {
		h, _ := wire.ParseFeedBody(r.frame[2:])
		rows = append(rows, []any{int64(6), int64(i + 1), int64(1), int64(1), int16(h.MsgType), nil, r.frame[2:]})
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"tickrelay_items"},
		[]string{"epoch", "seq", "exch_send", "root_recv", "msg_type", "symbol", "body"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	send := func(seq int) int64 { h, _ := wire.ParseFeedBody(recs[seq-1].frame[2:]); return h.SendTime }
	src, err := NewPostgresSource(ctx, dsn, "", Select{FromTime: send(1001), ToTime: send(2500)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if src.Total() != 1500 {
		t.Fatalf("total %d", src.Total())
	}
	cfg := DefaultConfig()
	cfg.Source, cfg.Speed = src, 100
	srv := startReplay(t, cfg)
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 0)
	if rep.Status != wire.LogonOK || rep.NextSeq != 1001 {
		t.Fatalf("logon: %+v", rep)
	}
	for seq := 1001; seq <= 2500; seq++ {
		if body := cl.nextData(); !bytes.Equal(body, recs[seq-1].frame[2:]) {
			t.Fatalf("seq %d differs", seq)
		}
	}
	<-srv.Done()
	if err := srv.Err(); err != nil || srv.Published() != 2500 {
		t.Fatalf("err %v published %d", err, srv.Published())
	}
	t.Logf("postgres: %v", srv.Summary())
}

// TestRecordGap: an exchange that skips a seq makes the recorder log in
// again from last+1; the capture comes out contiguous.
func TestRecordGap(t *testing.T) {
	recs := genRecords(40, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	starts := make(chan uint64, 10)
	go func() {
		for conn := 0; ; conn++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, conn int) {
				defer c.Close()
				f := &feedClient{t: t, c: c, in: wire.NewFeedReader(4096)}
				body, err := f.next()
				if err != nil {
					return
				}
				lg, err := wire.ParseLogon(body)
				if err != nil {
					return
				}
				starts <- lg.StartSeq
				out := wire.AppendLogonReply(nil, wire.LogonReply{Status: wire.LogonOK, NextSeq: lg.StartSeq})
				for seq := lg.StartSeq; seq <= 40; seq++ {
					if conn == 0 && seq == 11 {
						continue // the gap
					}
					out = append(out, recs[seq-1].frame...)
				}
				c.Write(out)
				io.Copy(io.Discard, c)
			}(c, conn)
		}
	}()
	path := filepath.Join(t.TempDir(), "gap.trcap")
	rec := record(t, ln.Addr(), path, 1, 30, nil)
	if got := []uint64{<-starts, <-starts}; got[0] != 1 || got[1] != 11 {
		t.Fatalf("logons from %v, want [1 11]", got)
	}
	if rec.Reconnects() != 1 {
		t.Fatalf("%d reconnects", rec.Reconnects())
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 30 {
		t.Fatalf("%d records", len(got))
	}
	for i, g := range got {
		if !bytes.Equal(g.frame, recs[i].frame) {
			t.Fatalf("record %d is seq %d", i, seqOf(g.frame))
		}
	}
}

// TestPacer checks the schedule, including the join between loop passes.
func TestPacer(t *testing.T) {
	pc := newPacer(1000, 2, false)
	if d := pc.due(1000 + 4e6); d != 2*time.Millisecond {
		t.Fatalf("due %v", d)
	}
	// A pass of 5 records over 4 ms: the next pass's first record follows
	// the last by the mean gap, 1 ms (0.5 ms at speed 2).
	pc.nextPass(1000+4e6, 5, 1000)
	if d := pc.due(1000); d != 2500*time.Microsecond {
		t.Fatalf("second pass starts at %v", d)
	}
	if d := pc.due(1000 + 4e6); d != 4500*time.Microsecond {
		t.Fatalf("second pass ends at %v", d)
	}
}

func TestProgressString(t *testing.T) {
	p := Progress{Frames: 250, Bytes: 3 << 20, Seq: 1249, Total: 1000, Elapsed: time.Second}
	want := "[#####               ]  25.0%  seq 1249  250/1000 frames  250 frames/s  3.0 MiB  ETA 3s"
	if got := p.String(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// readEpochs reads a served stream from its logon on: the (epoch, seq) of
// each data frame, the epoch following each Sequence Reset, until n data
// frames.
func (f *feedClient) readEpochs(epoch uint32, n int) (got [][2]uint64) {
	f.t.Helper()
	idle := time.Now().Add(5 * time.Second)
	for len(got) < n {
		if time.Now().After(idle) {
			f.t.Fatalf("no data for 5 s after %d frames (epoch %d)", len(got), epoch)
		}
		body, err := f.next()
		if err != nil {
			f.t.Fatalf("read after %d frames: %v", len(got), err)
		}
		h, _ := wire.ParseFeedBody(body)
		switch {
		case h.MsgType == wire.TypeSequenceReset:
			r := wire.ParseSequenceReset(body)
			if r.Epoch <= epoch || r.NextSeq != 1 {
				f.t.Fatalf("reset %+v in epoch %d", r, epoch)
			}
			epoch = r.Epoch
		case h.Seq != 0:
			got = append(got, [2]uint64{uint64(epoch), h.Seq})
			idle = time.Now().Add(5 * time.Second)
		}
	}
	return got
}

// TestRecordServeEpochs: a recording across the simulator's Sequence
// Reset keeps both epochs (replay info lists them); served, it plays the
// reset where it was; a single-epoch capture served with ResetEvery gets
// resets of the player's own, seqs from 1 in each epoch.
func TestRecordServeEpochs(t *testing.T) {
	const resetAt, total = 1000, 2500
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.MaxSeq, cfg.Retain = "127.0.0.1:0", 200_000, 100, total, 0
	cfg.Heartbeat, cfg.Logger, cfg.Epoch, cfg.ResetAt, cfg.StartOnLogon = 50*time.Millisecond, quiet, 40, resetAt, true
	exch, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "exchange", exch)
	path := filepath.Join(t.TempDir(), "days.trcap")
	record(t, exch.Addr(), path, 1, total, nil)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Epochs(); fmt.Sprint(got) != "[{40 1 1000 1000} {41 1 1500 1500}]" {
		t.Fatalf("capture epochs %v", got)
	}
	want := func(spans ...[3]uint64) (out [][2]uint64) { // epoch, first, last
		for _, sp := range spans {
			for s := sp[1]; s <= sp[2]; s++ {
				out = append(out, [2]uint64{sp[0], s})
			}
		}
		return out
	}
	src, err := NewCaptureSource(r, Select{})
	if err != nil {
		t.Fatal(err)
	}
	scfg := DefaultConfig()
	scfg.Source, scfg.Max = src, true
	srv := startReplay(t, scfg)
	cl, rep := logon(t, srv.Addr(), "tickrelay", "tickrelay", 1)
	if rep.Status != wire.LogonOK || rep.Epoch != 40 {
		t.Fatalf("logon: %+v", rep)
	}
	defer func() {
		if t.Failed() {
			t.Logf("player: %v, summary %v", srv.Err(), srv.Summary())
		}
	}()
	if got := cl.readEpochs(40, total); !slices.Equal(got, want([3]uint64{40, 1, 1000}, [3]uint64{41, 1, 1500})) {
		t.Fatalf("served %d frames, not the recorded epochs", len(got))
	}
	// One epoch of it, reset every 600 records by the player.
	src2, err := NewCaptureSource(r, Select{Epoch: 41})
	if err != nil {
		t.Fatal(err)
	}
	scfg.Source, scfg.ResetEvery = src2, 600
	srv2 := startReplay(t, scfg)
	cl2, rep := logon(t, srv2.Addr(), "tickrelay", "tickrelay", 1)
	if rep.Status != wire.LogonOK || rep.Epoch != 41 {
		t.Fatalf("logon: %+v", rep)
	}
	if got := cl2.readEpochs(41, 1500); !slices.Equal(got, want([3]uint64{41, 1, 600}, [3]uint64{42, 1, 600}, [3]uint64{43, 1, 300})) {
		t.Fatalf("served with ResetEvery: %v ... %v", got[:3], got[len(got)-3:])
	}
}
