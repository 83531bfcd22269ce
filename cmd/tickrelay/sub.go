package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"tickrelay/child"
	"tickrelay/child/client"
	"tickrelay/child/cluster"
	"tickrelay/child/frames"
	"tickrelay/latency"
	"tickrelay/perf"
	"tickrelay/wire"
)

func init() {
	commands["sub"] = command{"subscribe to a child and print frames (like `nats sub`), with latency stats", runSub}
}

func runSub(ctx context.Context, args []string) error {
	fs := newFlags("sub")
	addr := fs.String("addr", "127.0.0.1:9200", "child client address; several (a,b,c) make a cluster client that follows the directory and moves with no gap")
	policy := fs.String("policy", "", "cluster: how to pick the child: sticky (default), least-loaded, round-robin or random")
	id := fs.String("id", "", "cluster: the client's id, which sticky hashes (default: host/pid/random)")
	group := fs.String("group", "", "join this queue group (SUB ... GROUP name): each item of the symbols goes to one member across the children; \"name rr\" spreads item by item; \"name ack\" ACKs every 100 frames (a move or a loss redelivers the rest); with a cluster -addr the member is -id and keeps its place when it moves")
	token := fs.String("token", "", "AUTH with this token first (children with -entitlements); $TICKRELAY_TOKEN when empty")
	moveWindow := fs.Duration("move-window", 2*time.Second, "cluster: a move the directory asks for waits a random time within this")
	subs := fs.String("sub", "*", `symbols, comma-separated ("00001,00005"), or "*" for all`)
	resume := fs.Uint64("resume", 0, "RESUME from this seq instead of SUB (0 = SUB)")
	count := fs.Int("count", 0, "exit after this many frames (0 = run until interrupted)")
	stats := fs.Bool("stats", false, "print frames/s, gaps, duplicates and per-hop latency every -interval and at the end (stderr)")
	interval := fs.Duration("interval", 5*time.Second, "stats period")
	quiet := fs.Bool("quiet", false, "do not print frames")
	stall := fs.Duration("stall", 0, "read nothing for this long after subscribing, through a 4 KiB receive window, as a stalled client (to watch the child cut or conflate it)")
	childAdmin := fs.String("child-admin", "", "with -stats: the child's admin address, to correct root->child with its clock offset estimate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var syms []string
	for _, s := range strings.Split(*subs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !wire.ValidSymbol([]byte(s)) {
				return fmt.Errorf("-sub: bad symbol %q", s)
			}
			syms = append(syms, string(frames.CanonicalSymbol(nil, []byte(s))))
		}
	}
	if len(syms) == 0 {
		return errors.New("-sub: no symbol")
	}
	st := newSubStats(syms, *resume)
	tok := *token
	if tok == "" {
		tok = os.Getenv("TICKRELAY_TOKEN") // kept off the command line, where ps shows it
	}
	var grp cluster.Group
	if *group != "" {
		var err error
		if grp, err = parseGroup(*group); err != nil {
			return err
		}
	}
	var read func() (*client.Event, error)
	var ack func(seq uint64) error
	if addrs := strings.Split(*addr, ","); len(addrs) > 1 || *policy != "" || *id != "" {
		if *resume > 0 || *stall > 0 || *childAdmin != "" {
			return errors.New("-resume, -stall and -child-admin take one child (-addr without -policy or -id)")
		}
		p := cluster.Sticky
		if *policy != "" {
			var err error
			if p, err = cluster.ParsePolicy(*policy); err != nil {
				return err
			}
		}
		cc, err := cluster.Dial(ctx, cluster.Config{Seeds: addrs, ID: *id, Policy: p, MoveWindow: *moveWindow, Token: tok,
			OnMove: func(m cluster.Move) { fmt.Fprintln(os.Stderr, moveText(m)) }})
		if err != nil {
			return err
		}
		defer cc.Close()
		if *stats {
			defer func() {
				cs := cc.Stats()
				fmt.Fprintf(os.Stderr, "cluster: moves %v, duplicates dropped %d, moves that lost items %d, redelivered by a group %d\n", cs.Moves, cs.Duplicates, cs.Lost, cs.Redelivered)
			}()
		}
		go func() { <-ctx.Done(); cc.Close() }()
		fmt.Fprintf(os.Stderr, "cluster: on %s (%s), %d children known\n", cc.Child().Addr, p, len(cc.Children()))
		if *group != "" {
			err = cc.SubGroup(grp, syms...)
		} else {
			err = cc.Sub(syms...)
		}
		if err != nil {
			return err
		}
		read, ack = func() (*client.Event, error) { return cc.Next(ctx) }, cc.Ack
	} else {
		c, err := subOne(ctx, *addr, tok, *group, syms, *resume, *stall, *stats, *childAdmin, st)
		if err != nil {
			return err
		}
		defer c.Close()
		read = c.Next
		ack = func(seq uint64) error { return c.SendLine(wire.CmdAck + " " + strconv.FormatUint(seq, 10)) }
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	defer out.Flush()
	next := time.Now().Add(*interval)
	n := 0
	for *count == 0 || n < *count {
		ev, err := read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				break
			}
			if ev == nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bad frame: %v: %q\n", err, ev.Line)
			continue
		}
		if (!*quiet && ev.Kind != wire.LineTime) || ev.Kind == wire.LineErr || ev.Kind == wire.LineReset {
			out.Write(ev.Line)
			out.WriteByte('\n')
			if ev.Kind != wire.LineFrame {
				out.Flush()
			}
		}
		switch ev.Kind {
		case wire.LineFrame:
			n++
			st.frame(ev)
			if grp.Ack && n%100 == 0 {
				out.Flush() // handled: printed
				if err := ack(ev.Seq); err != nil {
					return err
				}
			}
		case wire.LineOK:
			st.ok(ev)
		case wire.LineReset:
			st.reset(ev)
		case wire.LineErr:
			st.err(ev)
			if code, _ := ev.Err(); code == wire.ErrCodeGone { // nothing subscribed: nothing will come
				return fmt.Errorf("resume from seq %d: %s (resume from a later seq, or SUB)", *resume, ev.Line)
			}
		case wire.LineTime:
			st.time(ev)
		}
		if *stats && ev.Recv >= next.UnixNano() {
			out.Flush()
			st.print(os.Stderr, "interval")
			st.resetInterval()
			next = time.Now().Add(*interval)
			st.rootOffset(*childAdmin)
		}
	}
	out.Flush()
	if *stats {
		st.resetInterval()
		st.print(os.Stderr, "final")
	}
	return nil
}

// parseGroup reads -group: "name [rr] [ack]".
func parseGroup(s string) (cluster.Group, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return cluster.Group{}, errors.New("-group: no name")
	}
	g := cluster.Group{Name: f[0]}
	for _, o := range f[1:] {
		switch o {
		case "rr":
			g.RR = true
		case "ack":
			g.Ack = true
		default:
			return g, fmt.Errorf("-group %q: unknown option %q (rr, ack)", s, o)
		}
	}
	return g, nil
}

// subOne connects to the one child at addr, syncs the clock (-stats) and
// subscribes (or resumes), stalling first when asked.
func subOne(ctx context.Context, addr, token, group string, syms []string, resume uint64, stall time.Duration, stats bool, childAdmin string, st *subStats) (*client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	window := 0
	if stall > 0 {
		window = 4096
	}
	c, err := client.DialWindow(dctx, addr, window)
	cancel()
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); c.Close() }()
	if token != "" {
		if err := c.SendLine(wire.CmdAuth + " " + token); err != nil {
			c.Close()
			return nil, err
		}
	}
	if stats {
		// Client<->child clock, measured before subscribing: on a quiet
		// connection the replies are read as they arrive (once frames
		// flow, a reply waits behind them and the round trip says so).
		if err := syncClock(c, st, 8); err != nil {
			c.Close()
			return nil, err
		}
		st.rootOffset(childAdmin)
	}
	switch {
	case resume > 0:
		err = c.Resume(resume, syms...)
	case group != "":
		err = c.SendLine(wire.CmdSub + " " + strings.Join(syms, " ") + " " + wire.KeywordGroup + " " + group)
	default:
		err = c.Sub(syms...)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-ctx.Done():
		}
	}
	return c, nil
}

// moveText is how sub reports a cluster move on stderr.
func moveText(m cluster.Move) string {
	s := fmt.Sprintf("cluster: moved %s -> %s (%s), stall %v", m.From, m.To, m.Reason, m.Stall.Round(time.Microsecond))
	switch {
	case m.Lost:
		s += ", LOST: the new child no longer held the resume point; subscribed afresh (images)"
	case m.Seq > 0:
		s += fmt.Sprintf(", resumed from epoch %d seq %d", m.Epoch, m.Seq)
	}
	return s
}

// syncClock sends n TIME requests one at a time and feeds each reply to
// st's client<->child clock (min-RTT sample wins).
func syncClock(c *client.Client, st *subStats, n int) error {
	c.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.Conn().SetReadDeadline(time.Time{})
	for range n {
		if err := c.Time(); err != nil {
			return err
		}
		for {
			ev, err := c.Next()
			if err != nil {
				return fmt.Errorf("TIME: %w", err)
			}
			if ev.Kind == wire.LineTime {
				st.time(ev)
				break
			}
		}
	}
	return nil
}

// subStats tracks what `tickrelay sub -stats` prints. Frames up to the
// OK seq of their symbol are images (not timed); later ones are live.
//
// Latencies go to HDR histograms (latency.Hops). The client's receive time is
// moved onto the child's clock with the client<->child offset measured with
// TIME (min-RTT sample of child.Clock), so child->client is corrected; the
// root->child hop is corrected with the child's own root offset estimate
// when -child-admin lets us read it (tickrelay_child_clock_offset_seconds),
// else taken as is (right on one host).
type subStats struct {
	okSeq       map[string]uint64 // symbol (or "*") -> OK seq
	all         bool
	last        uint64 // last live seq
	frames      int
	live        int
	gaps, dups  int
	conflations int    // ERR CONFLATED seen
	epoch       uint32 // of the frames (from OK and RESET lines)
	resets      int    // RESET lines seen
	start       time.Time
	ivStart     time.Time
	ivFrames    int
	iv, total   *latency.Hops
	sym         []byte

	clock      *child.Clock // client<->child: "root" = the child
	childOff   int64        // child clock minus client clock, ns
	childBound int64        // its error bound, -1 before any TIME reply
	rootOff    int64        // child clock minus root clock, ns (from -child-admin)
	rootBound  int64        // -1: unknown
}

func newSubStats(syms []string, resume uint64) *subStats {
	s := &subStats{okSeq: map[string]uint64{}, start: time.Now(), ivStart: time.Now(),
		iv: latency.NewHops(), total: latency.NewHops(), clock: child.NewClock(16), childBound: -1, rootBound: -1}
	s.all = slices.Contains(syms, wire.AllSymbols)
	if resume > 0 {
		for _, sym := range syms {
			s.okSeq[sym] = resume - 1
		}
		s.last = resume - 1
	}
	return s
}

func (s *subStats) ok(ev *client.Event) {
	if f := strings.Fields(string(ev.Line)); len(f) == 6 && f[1] == wire.KeywordGroup {
		// "OK GROUP name member seq epoch": its share of every item after
		// seq; it sees only some seqs, so gaps are not counted.
		seq, _ := strconv.ParseUint(f[4], 10, 64)
		s.okSeq[wire.AllSymbols], s.all, s.last = seq, false, max(s.last, seq)
		if e, err := strconv.ParseUint(f[5], 10, 32); err == nil {
			s.epoch = uint32(e)
		}
		return
	}
	verb, sym, seq, err := ev.OK()
	if err != nil || verb != wire.CmdSub {
		return
	}
	s.okSeq[sym] = seq
	if e := wire.OKEpoch(ev.Line); e != 0 {
		s.epoch = e
	}
	if sym == wire.AllSymbols || s.last == 0 {
		s.last = max(s.last, seq)
	}
}

// reset takes a RESET line: the seqs start over in the new epoch, under
// every subscription. A "*" client that had not reached the end the line
// names lost the rest of that epoch: a gap.
func (s *subStats) reset(ev *client.Event) {
	r, err := wire.ParseResetLine(ev.Line)
	if err != nil {
		return
	}
	s.resets++
	if s.all && s.last != 0 && s.last < r.PrevLast {
		s.gaps++
	}
	s.epoch, s.last = r.Epoch, r.Seq-1
	for sym := range s.okSeq {
		s.okSeq[sym] = r.Seq - 1
	}
}

// err takes an ERR line: after ERR CONFLATED the child sends each symbol's
// image again, so frames count as images until the symbol's next OK.
func (s *subStats) err(ev *client.Event) {
	if code, _ := ev.Err(); code == wire.ErrCodeConflated {
		s.conflations++
		clear(s.okSeq)
	}
}

func (s *subStats) frame(ev *client.Event) {
	s.frames++
	s.ivFrames++
	s.sym = wire.AppendSymbol(s.sym[:0], ev.Msg.Security)
	ok, found := s.okSeq[string(s.sym)]
	if a, allFound := s.okSeq[wire.AllSymbols]; allFound && (!found || a > ok) {
		ok, found = a, true
	}
	if !found || ev.Seq <= ok {
		return // image
	}
	s.live++
	switch {
	case ev.Seq <= s.last:
		s.dups++
	case s.all && s.last != 0 && ev.Seq > s.last+1:
		s.gaps++ // only "*" sees every seq
	}
	s.last = max(s.last, ev.Seq)
	s.iv.Record(ev.Stamps, ev.Recv+s.childOff, s.rootOff)
}

// time takes a TIME reply received at recv into the client<->child clock.
func (s *subStats) time(ev *client.Event) {
	t0, t1, t2, err := ev.Time()
	if err != nil {
		return
	}
	if _, ok := s.clock.Add(t0, t1, t2, ev.Recv); ok {
		s.childOff, s.childBound, _ = s.clock.Estimate()
	}
}

// rootOffset reads the child's root offset estimate from its admin port.
func (s *subStats) rootOffset(admin string) {
	if admin == "" {
		return
	}
	m := perf.ScrapeAll(admin, "tickrelay_child_clock_offset_seconds", "tickrelay_child_clock_offset_bound_seconds")
	off, ok1 := m["tickrelay_child_clock_offset_seconds"]
	bound, ok2 := m["tickrelay_child_clock_offset_bound_seconds"]
	if ok1 && ok2 {
		// The child publishes root minus child; Hops wants child minus root.
		s.rootOff, s.rootBound = -int64(off*1e9), int64(bound*1e9)
	}
}

func (s *subStats) resetInterval() {
	s.total.Merge(s.iv)
	s.iv.Reset()
}

func (s *subStats) print(w io.Writer, what string) {
	now := time.Now()
	if what == "final" {
		fmt.Fprintf(w, "%s: %d frames (%d live), %.0f frames/s, epoch %d, last seq %d, gaps %d, duplicates %d, conflations %d, resets %d\n",
			what, s.frames, s.live, float64(s.frames)/now.Sub(s.start).Seconds(), s.epoch, s.last, s.gaps, s.dups, s.conflations, s.resets)
	} else { // the counts of this interval; the totals in brackets
		fmt.Fprintf(w, "%s: %d frames, %.0f frames/s, epoch %d, last seq %d (in all: %d frames, %d live, gaps %d, duplicates %d, conflations %d, resets %d)\n",
			what, s.ivFrames, float64(s.ivFrames)/now.Sub(s.ivStart).Seconds(), s.epoch, s.last, s.frames, s.live, s.gaps, s.dups, s.conflations, s.resets)
	}
	set := s.total
	if what != "final" {
		set = s.iv
		s.ivStart, s.ivFrames = now, 0
	}
	fmt.Fprintf(w, "  clock: child-client %s, root-child %s\n", offsetText(s.childOff, s.childBound),
		offsetText(-s.rootOff, s.rootBound))
	set.Snapshot().WriteTable(w)
}

func offsetText(off, bound int64) string {
	if bound < 0 {
		return "unknown (taken as 0)"
	}
	return fmt.Sprintf("%+.1f us ± %.1f us", float64(off)/1e3, float64(bound)/1e3)
}
