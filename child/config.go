package child

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/child/session"
	"tickrelay/control"
	"tickrelay/wire"
)

// Config configures a Child.
type Config struct {
	// Roots are the root relay addresses (host:port): one, or an A/B pair
	// (up to MaxRoots) relaying the same exchange feed. The child keeps a
	// relay line to each and takes every seq from whichever line delivers
	// it first (arbitration by the exchange seq, arbiter.go).
	Roots   []string
	Addr    string // client listen address, host:port ("127.0.0.1:0" in tests)
	Name    string // sent to the roots in Hello; labels logs
	FromSeq uint64 // first seq to ask the roots for (>= 1)

	Loops       int           // gnet event loops (>= 1)
	MaxPending  int           // unsent bytes per client before the slow-client policy applies
	SlowPolicy  string        // SlowDisconnect (ERR SLOW, close) or SlowConflate (resync with images)
	SlowTimeout time.Duration // SlowConflate: a client still behind after this long is disconnected
	SlowLinger  time.Duration // a slow client cut has this long to take its last line (ERR SLOW) before it is closed
	// ClientSendBuffer is each client socket's kernel send buffer (SO_SNDBUF;
	// 0: the kernel's autotuning, up to net.ipv4.tcp_wmem's max). Bytes the
	// kernel holds do not count against MaxPending, so this bounds what a
	// stalled client costs beyond it.
	ClientSendBuffer int
	// Writes is how a loop writes its clients: WritesSyscall,
	// WritesUring or WritesAuto (writes.go).
	Writes            string
	HistorySize       int           // frames held for RESUME (rounded up to a power of two)
	HistoryBytes      int           // bytes of frames held for RESUME (resident from the start: populated when made)
	MaxCommandsPerSec int           // client lines per second before ERR FLOOD and close
	IdleTimeout       time.Duration // no relay frame for this long -> reconnect (the root heartbeats)
	ClockInterval     time.Duration // TimeReq period
	AnnounceEvery     time.Duration // how often the child announces itself to its roots (their AnnounceEvery)
	ClockWindow       int           // samples the clock estimator keeps
	DialTimeout       time.Duration
	BackoffMin        time.Duration // reconnect backoff, doubling up to BackoffMax
	BackoffMax        time.Duration
	DrainTimeout      time.Duration // on shutdown: time allowed to flush clients and stop the engine
	// DrainGrace: on shutdown, first drain (drain.go) for up to this
	// long while clients move to other children; 0 stops at once.
	DrainGrace time.Duration

	// Admission (admission.go): connections in all (MaxClients) and from
	// one IP (MaxClientsPerIP), and accepts a second with a burst; 0 is
	// no limit. A refused connection gets ERR BUSY and is closed.
	MaxClients, MaxClientsPerIP int
	AcceptRate                  float64
	AcceptBurst                 int
	// Per client: command lines a second with a burst (0: no limit; over
	// it ERR BUSY, under MaxCommandsPerSec's flood cut) and subscriptions
	// (0: no limit; ERR LIMIT).
	CmdRate  float64
	CmdBurst int
	MaxSubs  int
	// MaxAlerts caps the standing alerts of one identity (0: no cap);
	// over it ALERT gets ERR LIMIT.
	MaxAlerts int
	// ShedBacklog: while an event loop's fan-out is this many seqs behind
	// the relay, its SUB and RESUME get ERR BUSY and /healthz says
	// degraded (0: never).
	ShedBacklog uint64
	// Entitlements: the file of tokens and their symbols (package
	// entitle; "" for none), reloaded by Reload (SIGHUP) and when it
	// changes; with it, clients must AUTH within AuthTimeout.
	Entitlements string
	AuthTimeout  time.Duration

	// OnControl, when set, sees each control record as the child applies
	// it (control.go): at is the position (wire.Pos) of the last item published
	// before it; late that it came after items past its place. A
	// snapshot shows as a record with no op. It runs under the relay's
	// lock: keep it short.
	OnControl func(r control.Record, at uint64, late bool)

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

// Slow-client policies (Config.SlowPolicy), applied once a client's unsent
// bytes pass MaxPending.
const (
	// SlowDisconnect sends ERR SLOW and closes the client (NATS and Redis
	// do the same at their limits).
	SlowDisconnect = "disconnect"
	// SlowConflate stops sending the client frames; once its backlog is
	// down to MaxPending/4 it gets ERR CONFLATED, the images and OKs of its
	// subscriptions again, then every update after them: the latest state,
	// the updates between conflated away. A client still behind after
	// SlowTimeout is disconnected.
	SlowConflate = "conflate"
)

// MaxRoots bounds Config.Roots: an A/B pair, with room for a third line.
const MaxRoots = 4

// DefaultConfig returns a Config with the defaults of `tickrelay child`.
func DefaultConfig() Config {
	return Config{
		Roots:   []string{"127.0.0.1:9100"},
		Addr:    "127.0.0.1:9200",
		Name:    "child",
		FromSeq: 1,
		// One loop per CPU but one: the relay reader, the one serial
		// stage every frame crosses, must find a P free rather than queue
		// behind busy (thread-locked) loops. On 2 shared CPUs at 100k
		// msgs/s to 5,000 clients, root->child p50 was ~2 ms with 1 loop,
		// ~145 ms with 2 (tickrelay perf, noisy box).
		Loops:       max(runtime.NumCPU()-1, 1),
		MaxPending:  4 << 20,
		SlowPolicy:  SlowDisconnect,
		SlowTimeout: 30 * time.Second,
		SlowLinger:  session.DefaultSlowLinger,
		// Enough for a "*" client at 200k msgs/s on a LAN (10 ms of it);
		// far-away clients may want more (bandwidth x round trip).
		ClientSendBuffer:  256 << 10,
		Writes:            WritesSyscall,
		HistorySize:       1 << 18,
		HistoryBytes:      64 << 20,
		MaxCommandsPerSec: 1000,
		IdleTimeout:       5 * time.Second,
		ClockInterval:     time.Second,
		AnnounceEvery:     time.Second,
		ClockWindow:       16,
		DialTimeout:       2 * time.Second,
		BackoffMin:        50 * time.Millisecond,
		BackoffMax:        5 * time.Second,
		DrainTimeout:      5 * time.Second,
		AcceptBurst:       100,
		CmdBurst:          100,
		ShedBacklog:       1 << 16,
		AuthTimeout:       5 * time.Second,
		MaxAlerts:         10_000,
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("child config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Roots) < 1 || len(c.Roots) > MaxRoots {
		bad("Roots", "%d addresses, want 1..%d", len(c.Roots), MaxRoots)
	}
	for i, a := range c.Roots {
		if a == "" {
			bad("Roots", "address %d is empty", i+1)
		} else if slices.Contains(c.Roots[:i], a) {
			bad("Roots", "%s twice", a)
		}
	}
	if c.Addr == "" {
		bad("Addr", "required")
	}
	if c.FromSeq < 1 {
		bad("FromSeq", "must be >= 1 (data starts at seq 1)")
	}
	if c.Loops < 1 || c.Loops > 256 {
		bad("Loops", "%d not in 1..256", c.Loops)
	}
	if c.MaxPending < 64<<10 {
		bad("MaxPending", "%d < 64 KiB", c.MaxPending)
	}
	if c.ClientSendBuffer < 0 {
		bad("ClientSendBuffer", "%d < 0", c.ClientSendBuffer)
	}
	if c.Writes != WritesSyscall && c.Writes != WritesUring && c.Writes != WritesAuto {
		bad("Writes", "%q: want %q, %q or %q", c.Writes, WritesSyscall, WritesUring, WritesAuto)
	}
	if c.SlowPolicy != SlowDisconnect && c.SlowPolicy != SlowConflate {
		bad("SlowPolicy", "%q: want %q or %q", c.SlowPolicy, SlowDisconnect, SlowConflate)
	}
	if c.HistorySize < 1 || c.HistorySize > 1<<26 {
		bad("HistorySize", "%d not in 1..%d", c.HistorySize, 1<<26)
	}
	if c.HistoryBytes < 2*wire.MaxTextFrame || c.HistoryBytes > 1<<31-1 {
		bad("HistoryBytes", "%d not in %d..2 GiB", c.HistoryBytes, 2*wire.MaxTextFrame)
	}
	if c.MaxCommandsPerSec < 1 {
		bad("MaxCommandsPerSec", "must be >= 1")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"IdleTimeout", c.IdleTimeout}, {"ClockInterval", c.ClockInterval}, {"AnnounceEvery", c.AnnounceEvery}, {"DialTimeout", c.DialTimeout},
		{"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax}, {"DrainTimeout", c.DrainTimeout},
		{"SlowTimeout", c.SlowTimeout}, {"SlowLinger", c.SlowLinger}} {
		if d.v <= 0 {
			bad(d.name, "must be > 0")
		}
	}
	if c.BackoffMax < c.BackoffMin {
		bad("BackoffMax", "%v < BackoffMin %v", c.BackoffMax, c.BackoffMin)
	}
	if c.ClockWindow < 1 {
		bad("ClockWindow", "must be >= 1")
	}
	if c.MaxClients < 0 || c.MaxClientsPerIP < 0 || c.MaxSubs < 0 || c.MaxAlerts < 0 || c.AcceptRate < 0 || c.CmdRate < 0 {
		bad("limits", "MaxClients, MaxClientsPerIP, MaxSubs, MaxAlerts, AcceptRate and CmdRate must be >= 0 (0: no limit)")
	}
	if c.Entitlements != "" && c.AuthTimeout <= 0 {
		bad("AuthTimeout", "must be > 0 with Entitlements")
	}
	return errors.Join(errs...)
}
