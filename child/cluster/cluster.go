// Package cluster is a client of a tier of tickrelay children: it dials
// from seed addresses, learns the live children from the directory (WATCH
// CHILDREN), picks one by policy and follows the set. When its child dies,
// drains, turns it away (ERR BUSY) or stops being its choice, it moves to
// the next and RESUMEs every subscription after the last seq it delivered,
// dropping what it already had: the caller reads one ordered stream per
// symbol, with no gap and no duplicate, across every move (or, when the
// new child no longer holds that far back, a Move that says Lost).
//
// A Client is used by one goroutine: Sub, Unsub and Next from it alone.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/child/client"
	"tickrelay/child/frames"
	"tickrelay/wire"
)

// Config says where the children are and how to choose among them.
type Config struct {
	Seeds  []string // child client addresses to learn the set from (any live one will do)
	ID     string   // the client's identity, for sticky (default: host and pid)
	Policy Policy   // default Sticky
	// MoveWindow: a move the set asks for (a child joined, sticky or
	// balance) or a drain waits a random time within it, so thousands
	// of clients do not reconnect in the same millisecond. A dead
	// child's clients move at once. Default 2s.
	MoveWindow time.Duration
	// Reconnect backoff when no child answers: doubling from BackoffMin
	// to BackoffMax, each wait jittered. Defaults 50ms, 2s.
	BackoffMin, BackoffMax time.Duration
	DialTimeout            time.Duration // default 2s
	// Heartbeat: after this long with nothing read the client sends PING;
	// after twice as long it takes the child as dead. Default 1s.
	Heartbeat time.Duration
	// LoadEvery: least-loaded asks for the loads this often (the
	// directory is pushed only when the set changes). Default 1s.
	LoadEvery time.Duration
	OnMove    func(Move) // each move, once it is resumed (called from Next)
	Token     string     // sent as "AUTH token" first on each connection, where children have entitlements
	Rcvbuf    int        // SO_RCVBUF of each connection (0: the kernel's)
}

// Reason says why a client moved.
type Reason string

const (
	ReasonStart   Reason = "start"   // the first child, picked from the seed's set
	ReasonSet     Reason = "set"     // the set changed and the policy now picks another
	ReasonDead    Reason = "dead"    // the connection ended or went silent
	ReasonDrain   Reason = "drain"   // the child is draining (INFO DRAIN)
	ReasonBusy    Reason = "busy"    // ERR BUSY
	ReasonBalance Reason = "balance" // least-loaded left a child loaded above the mean
)

// Move is one change of child, reported once the new child has answered.
type Move struct {
	From, To string // addresses ("" when there was none)
	Reason   Reason
	Epoch    uint32
	Seq      uint64 // the seq every subscription resumed from (0: subscribed afresh)
	// Lost: the new child no longer held Seq (ERR GONE), so every symbol
	// was subscribed afresh, with images: updates between are lost.
	Lost  bool
	Stall time.Duration // from leaving From to the new child's answer
	At    time.Time
}

// Stats counts what a client did.
type Stats struct {
	Moves      map[Reason]int
	Duplicates int // frames dropped as already delivered (resumed history overlapping)
	Lost       int // moves that could not resume (Move.Lost)
	// Redelivered: frames a group's child sent again after a move (its
	// REDELIVER lines); those the client had are in Duplicates.
	Redelivered int
}

// Client is a connection to the tier that moves between children.
type Client struct {
	cfg Config
	c   *client.Client // nil between children
	cur wire.ChildInfo // the child it is on (Addr only before the set names it)
	set []wire.ChildInfo

	subs []string // the caller's subscriptions, in order ("*" too)
	// Coverage: every update of symbol s up to covered[s] (with "*",
	// allCovered for symbols not in the map) was delivered. conn is the
	// last live frame's seq on this epoch: frames arrive in seq order,
	// so every subscribed symbol is covered to it.
	covered    map[uint32]uint64
	all        bool
	allCovered uint64
	conn       uint64
	epoch      uint32
	pending    map[string]bool // SUBs not answered yet: frames of them are images
	pendingAll bool
	resubs     map[string]bool // SUBs a lost RESUME sent again: their OK is not the caller's
	group      *groupSub       // SubGroup's membership (group.go); covered is then its own

	moving   *Move     // a move waiting for the new child's answer
	moveAt   time.Time // a scheduled move (zero: none)
	moveWhy  Reason
	moveTo   string // preferred target of the scheduled move ("": the policy's choice)
	readAt   time.Time
	pinged   bool
	pollAt   time.Time
	settleAt time.Time            // least-loaded: no balance decision before
	failed   map[string]time.Time // addresses that failed, skipped until
	backoff  time.Duration
	stats    Stats
	mu       sync.Mutex // guards c's changes against Close from another goroutine
	closed   atomic.Bool
}

// Dial learns the set from the first seed that answers and connects to
// the child the policy picks.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Seeds) == 0 {
		return nil, errors.New("cluster: no seed address")
	}
	if cfg.Policy == "" {
		cfg.Policy = Sticky
	}
	if _, err := ParsePolicy(string(cfg.Policy)); err != nil {
		return nil, err
	}
	if cfg.ID == "" { // a legal identity (a group member's name): at most 64 bytes
		host, _ := os.Hostname()
		cfg.ID = host[:min(len(host), 36)] + "/" + strconv.Itoa(os.Getpid()) + "/" + strconv.FormatUint(rand.Uint64()>>24, 36)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MoveWindow, 2*time.Second)
	def(&cfg.BackoffMin, 50*time.Millisecond)
	def(&cfg.BackoffMax, 2*time.Second)
	def(&cfg.DialTimeout, 2*time.Second)
	def(&cfg.Heartbeat, time.Second)
	def(&cfg.LoadEvery, time.Second)
	cl := &Client{cfg: cfg, covered: map[uint32]uint64{}, pending: map[string]bool{}, failed: map[string]time.Time{}}
	var errs []error
	for _, addr := range cfg.Seeds {
		c, set, err := cl.open(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cl.set = set
		cl.attach(c, addr)
		if pick := cl.rank(); len(pick) > 0 && pick[0].Addr != addr {
			cl.setConn(nil) // the seed told the set; the policy picks another
			cl.cur = wire.ChildInfo{}
			if err := cl.connect(ctx, pick[0].Addr); err != nil {
				return nil, err
			}
		}
		return cl, nil
	}
	return nil, fmt.Errorf("cluster: no seed answered: %w", errors.Join(errs...))
}

// open dials addr and reads its directory.
func (cl *Client) open(ctx context.Context, addr string) (*client.Client, []wire.ChildInfo, error) {
	dctx, cancel := context.WithTimeout(ctx, cl.cfg.DialTimeout)
	defer cancel()
	c, err := client.DialWindow(dctx, addr, cl.cfg.Rcvbuf)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: %s: %w", addr, err)
	}
	fail := func(err error) (*client.Client, []wire.ChildInfo, error) {
		c.Close()
		return nil, nil, fmt.Errorf("cluster: %s: %w", addr, err)
	}
	if cl.cfg.Token != "" {
		if err := c.SendLine(wire.CmdAuth + " " + cl.cfg.Token); err != nil {
			return fail(err)
		}
	}
	if err := c.SendLine("WATCH " + wire.CmdChildren); err != nil {
		return fail(err)
	}
	deadline, _ := dctx.Deadline()
	c.Conn().SetReadDeadline(deadline)
	for {
		ev, err := c.Next()
		if err != nil {
			return fail(err)
		}
		switch ev.Kind {
		case wire.LineChildren:
			_, set, err := wire.ParseChildrenLine(ev.Line)
			if err != nil {
				return fail(err)
			}
			c.Conn().SetReadDeadline(time.Time{})
			return c, set, nil
		case wire.LineErr:
			return fail(fmt.Errorf("%s", ev.Line))
		}
	}
}

// attach makes c, on the child at addr, the connection.
func (cl *Client) attach(c *client.Client, addr string) {
	cl.setConn(c)
	cl.cur = wire.ChildInfo{Addr: addr}
	for _, k := range cl.set {
		if k.Addr == addr {
			cl.cur = k
		}
	}
	cl.readAt, cl.pinged, cl.backoff = time.Now(), false, 0
	cl.moveAt, cl.moveTo = time.Time{}, "" // planned for the child it left
	cl.pollAt = time.Now().Add(cl.cfg.LoadEvery)
	cl.settleAt = time.Now().Add(cl.settle())
}

// settle is how long least-loaded waits after a move before it judges
// the loads again: the loads must show the moves first.
func (cl *Client) settle() time.Duration { return 3*cl.cfg.LoadEvery + cl.cfg.MoveWindow }

// Child is the child the client is on (its address alone while the
// directory does not list it).
func (cl *Client) Child() wire.ChildInfo { return cl.cur }

// Children is the set as last learnt.
func (cl *Client) Children() []wire.ChildInfo { return cl.set }

// Stats returns a copy of the counts.
func (cl *Client) Stats() Stats {
	s := cl.stats
	s.Moves = make(map[Reason]int, len(cl.stats.Moves))
	for k, v := range cl.stats.Moves {
		s.Moves[k] = v
	}
	return s
}

// Close closes the connection; Next returns net.ErrClosed after it. It
// may be called from any goroutine.
func (cl *Client) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.closed.Store(true)
	if cl.c != nil {
		return cl.c.Close()
	}
	return nil
}

// setConn replaces the connection (closing the old one); after Close it
// closes c too.
func (cl *Client) setConn(c *client.Client) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c != nil {
		cl.c.Close()
	}
	if c != nil && cl.closed.Load() {
		c.Close()
	}
	cl.c = c
}

// Sub subscribes to symbols ("*" for all): images, OK SUB, then updates,
// kept across moves.
func (cl *Client) Sub(syms ...string) error {
	if cl.group != nil {
		return errors.New("cluster: a client is a plain subscriber or a group member, not both")
	}
	syms = canonical(syms)
	for _, s := range syms {
		if s == "*" {
			cl.pendingAll = true
		} else {
			cl.pending[s] = true
		}
		cl.subs = append(cl.subs, s)
	}
	if cl.c == nil {
		return nil // the next child gets them
	}
	return cl.c.Sub(syms...)
}

// Unsub ends subscriptions.
func (cl *Client) Unsub(syms ...string) error {
	syms = canonical(syms)
	for _, s := range syms {
		for i, t := range cl.subs {
			if t == s {
				cl.subs = append(cl.subs[:i], cl.subs[i+1:]...)
				break
			}
		}
		delete(cl.pending, s)
		if s == "*" {
			cl.all, cl.pendingAll = false, false
		} else if code, ok := symCode(s); ok {
			delete(cl.covered, code)
		}
	}
	if cl.c == nil {
		return nil
	}
	return cl.c.Unsub(syms...)
}

// canonical spells symbols as the child's OK lines do ("1" is "00001").
func canonical(syms []string) []string {
	out := make([]string, len(syms))
	for i, s := range syms {
		out[i] = string(frames.CanonicalSymbol(nil, []byte(s)))
	}
	return out
}

func symCode(s string) (uint32, bool) { return wire.ParseSymbol([]byte(s)) }
