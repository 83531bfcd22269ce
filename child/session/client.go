package session

import (
	"tickrelay/entitle"
	"tickrelay/internal/ratelimit"
)

// Conn is what the session core needs of a client connection.
type Conn interface {
	// Write queues b: what the socket does not take at once is copied
	// and sent later. A write error closes the connection (Loop.Closed
	// runs before Write returns).
	Write(b []byte)
	// Buffered is the count of bytes queued and not yet sent.
	Buffered() int
	// Queued is the count of bytes the kernel's send queue holds: sent,
	// not yet taken by the peer (a syscall: call it sparingly).
	Queued() int
	// Close closes the connection; Loop.Closed runs before it returns.
	Close()
	RemoteAddr() string
}

// Client is one client connection's state; it lives on its Loop.
type Client struct {
	conn  Conn              // nil once closed
	subs  map[uint64][]byte // symbol hash -> canonical symbol, subscribed
	all   bool              // subscribed to "*"
	first int32             // its first and last delivery in fanout.sent, index+1 (0: none)
	last  int32
	out   []byte // command replies of the current Input
	in    []byte // partial command line
	tick  uint64
	dead  bool // closed or closing: send nothing more
	// stale: behind by over MaxPending under the conflate policy, since
	// staleAt: it gets no frames until resync catches it up with images.
	stale   bool
	staleAt int64
	pollAt  int64 // a stale client's kernel queue is not asked again before
	queued  int   // its kernel queue at the last poll (-1: not asked yet)
	// behind: its socket stopped taking bytes, so frames from seq
	// behindFrom on are not copied to it but owed (backlog bytes, counted
	// as the fan-out hands them out); it catches up from the history once
	// its socket has taken what it holds (behind.go).
	full       bool // the connection held unsent bytes after the last write
	behind     bool
	behindFrom uint64
	backlog    int
	// img is what it has yet to take of a streamed "SUB *" image (the
	// loop's shared bytes), and oks the symbols whose OK SUB it gets
	// once it is level (sub.go).
	img []byte
	oks [][]byte
	// maxFrom is the highest from of any of its subscriptions: history
	// frames after it are due by symbol alone.
	maxFrom uint64
	// lingerUntil: cut (dead), it is closed once its socket has taken the
	// ERR line or at this time (slow.go).
	lingerUntil int64
	// grace: the size of the largest reply (a SUB's image) still draining;
	// unsent bytes may pass MaxPending by that much: an image the client
	// asked for does not make it slow. 0 once below MaxPending.
	grace  int
	syms   [][]byte
	sym    []byte
	hashes []uint64
	watch  bool // WATCH CHILDREN: gets the directory on each change
	subbed bool // it sent a SUB or RESUME (the first RESUME counts an arrival)
	cmds   ratelimit.Bucket
	// Entitlements (auth.go): grant is what it may see (nil: everything,
	// no entitlements in force); key its token's hash, for reloads.
	authed   bool
	openedAt int64
	identity string
	key      entitle.Key
	grant    *entitle.Grant
	groups   []*membership // queue groups it is in (group.go)
	// Alerts (alerts.go): its identity, the number of the last fire it
	// was given, the ALERT and UNALERT ids waiting for their record.
	owner     string
	firedN    uint64
	alertWait map[string]byte
	// Ack groups: the highest seq handed to it through one, and its last ACK.
	groupSent, acked uint64
	winAt            int64 // flood window start
	winN             int
}

// Dead reports whether cl is closed or closing (it gets nothing more).
func (cl *Client) Dead() bool { return cl.dead }

// Open reports whether cl's connection is still open.
func (cl *Client) Open() bool { return cl.conn != nil }
