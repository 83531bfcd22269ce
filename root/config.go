package root

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/wire"
)

// Config configures a Root.
type Config struct {
	// ExchangeAddr is the exchange feed's host:port.
	ExchangeAddr string
	// User and Password log in to the exchange (at most 16 bytes each).
	User, Password string
	// Addr is the relay listen address for children ("127.0.0.1:0" picks a port).
	Addr string
	// RingSize is the number of items kept in memory; a power of two.
	RingSize int
	// Store is the durable history beneath the ring; nil means none.
	Store Store
	// Loops is the number of gnet event loops serving children (0: one per CPU).
	Loops int

	// DialTimeout bounds the exchange dial and the logon exchange.
	DialTimeout time.Duration
	// IdleTimeout drops the exchange session when nothing (not even a
	// heartbeat) arrived for that long.
	IdleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// per failed attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration

	// MaxBatchBytes bounds the items of one relay batch (and so one write).
	MaxBatchBytes int
	// MaxOutbound is the per-child outbound buffer level above which the
	// root stops writing to it until it drains (backpressure).
	MaxOutbound int
	// WriteBudget bounds the bytes written to one child per drain pass, so
	// one catching-up child does not starve the others on its loop.
	WriteBudget int
	// Heartbeat is the idle interval after which a child gets a heartbeat.
	Heartbeat time.Duration
	// Tick is the safety-net interval at which every loop drains even
	// without a signal from the feed.
	Tick time.Duration
	// AnnounceEvery is how often children announce themselves (their
	// -announce-every): one silent for three of these leaves the directory,
	// and the first one after a start passes before the root publishes it.
	AnnounceEvery time.Duration
	// GroupLinger is how long a queue-group member that is an identity
	// keeps its place after its connection ends (or its child's line
	// drops): back on any child meanwhile, it takes its symbols (and its
	// unacknowledged items) again. 0: it leaves at once.
	GroupLinger time.Duration
	// DrainTimeout bounds the final flush to children on shutdown.
	DrainTimeout time.Duration
	// HelloTimeout closes a child connection that sends no Hello for this
	// long (a stray or stuck peer holds no socket for ever).
	HelloTimeout time.Duration

	// Now returns the time in ns since the Unix epoch (default time.Now).
	Now func() int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil means they are not registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		ExchangeAddr:  "127.0.0.1:9000",
		User:          "tickrelay",
		Password:      "tickrelay",
		Addr:          "127.0.0.1:9100",
		RingSize:      1 << 20,
		DialTimeout:   3 * time.Second,
		IdleTimeout:   5 * time.Second,
		MinBackoff:    100 * time.Millisecond,
		MaxBackoff:    5 * time.Second,
		MaxBatchBytes: 64 << 10,
		MaxOutbound:   4 << 20,
		WriteBudget:   1 << 20,
		Heartbeat:     time.Second,
		Tick:          100 * time.Millisecond,
		AnnounceEvery: time.Second,
		GroupLinger:   3 * time.Second,
		DrainTimeout:  2 * time.Second,
		HelloTimeout:  10 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.ExchangeAddr); err != nil {
		return fmt.Errorf("root config: ExchangeAddr %q: %w", c.ExchangeAddr, err)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("root config: Addr %q: %w", c.Addr, err)
	}
	switch {
	case c.User == "" || len(c.User) > 16:
		return errors.New("root config: User must be 1..16 bytes")
	case len(c.Password) > 16:
		return errors.New("root config: Password must be at most 16 bytes")
	case c.RingSize < 2 || c.RingSize&(c.RingSize-1) != 0:
		return fmt.Errorf("root config: RingSize %d is not a power of two >= 2", c.RingSize)
	case c.Loops < 0:
		return fmt.Errorf("root config: Loops %d < 0", c.Loops)
	case c.DialTimeout <= 0:
		return errors.New("root config: DialTimeout must be > 0")
	case c.IdleTimeout <= 0:
		return errors.New("root config: IdleTimeout must be > 0")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("root config: need 0 < MinBackoff <= MaxBackoff")
	case c.MaxBatchBytes < wire.MaxRelayItem || c.MaxBatchBytes > wire.MaxRelayFrame-wire.RelayBatchHeader:
		return fmt.Errorf("root config: MaxBatchBytes %d outside [%d, %d]", c.MaxBatchBytes, wire.MaxRelayItem, wire.MaxRelayFrame-wire.RelayBatchHeader)
	case c.MaxOutbound < c.MaxBatchBytes:
		return errors.New("root config: MaxOutbound must be >= MaxBatchBytes")
	case c.WriteBudget < c.MaxBatchBytes:
		return errors.New("root config: WriteBudget must be >= MaxBatchBytes")
	case c.Heartbeat <= 0:
		return errors.New("root config: Heartbeat must be > 0")
	case c.Tick <= 0:
		return errors.New("root config: Tick must be > 0")
	case c.AnnounceEvery <= 0:
		return errors.New("root config: AnnounceEvery must be > 0")
	case c.GroupLinger < 0:
		return errors.New("root config: GroupLinger must be >= 0 (0: a member leaves at once)")
	case c.DrainTimeout <= 0:
		return errors.New("root config: DrainTimeout must be > 0")
	case c.HelloTimeout <= 0:
		return errors.New("root config: HelloTimeout must be > 0")
	}
	return nil
}

// RelayLoops is the number of relay event loops the root runs: Loops, or
// one per CPU when 0.
func (c Config) RelayLoops() int {
	if c.Loops > 0 {
		return c.Loops
	}
	return runtime.NumCPU()
}
