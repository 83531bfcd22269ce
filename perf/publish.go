package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tickrelay/feed"
	"tickrelay/wire"
)

// Source is the exchange message stream: message i (1-based) is the i-th
// Next. feed.Generator satisfies it.
type Source interface {
	Next(m *wire.Msg)
}

// NewFeedSource is the simulator's message stream (feed.Generator), so the
// peers carry exactly what tickrelay carries: same mix, sizes and symbols.
func NewFeedSource(symbols int, seed int64) Source {
	return feed.NewGenerator(feed.GenConfig{Seed: seed, Symbols: max(symbols, 1)})
}

// Subject returns the peer topic of a security code: "t.00700".
func Subject(code uint32) string { return string(AppendSubject(nil, code)) }

// AppendSubject appends the peer topic of a security code.
func AppendSubject(dst []byte, code uint32) []byte {
	return wire.AppendSymbol(append(dst, "t."...), code)
}

// PublisherConfig configures a peer publisher.
type PublisherConfig struct {
	Protocol string // "nats" or "redis"
	Addr     string
	Rate     int // messages per second; 0 publishes as fast as the server takes them
	Source   Source
	// MaxMessages stops after this many messages (0: until ctx ends).
	MaxMessages uint64
	Now         func() int64
	// Nice runs the publishing on an OS thread of its own at this nice
	// value (0: the caller's), the priority of a feed source (priority.go).
	Nice int
}

// Publisher converts the feed into text frames (same bytes as a child's,
// only the exchange stamp set) and publishes each on its symbol's subject
// (NATS) or channel (Redis).
//
// The exchange stamp is the publish time, but never later than the
// message's place in the rate's schedule plus one tick (dueStamp), as the
// simulator stamps. A server that cannot take the rate holds the publisher
// back through TCP; stamping at the delayed send would leave that backlog
// out of the latency (coordinated omission), while the simulator never waits
// for tickrelay and its stamps include every backlog downstream.
type Publisher struct {
	cfg       PublisherConfig
	now       func() int64
	published atomic.Uint64
	mu        sync.Mutex // guards counts after Run
	counts    map[uint32]uint64
}

// NewPublisher validates cfg.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	switch {
	case cfg.Protocol != "nats" && cfg.Protocol != "redis":
		return nil, fmt.Errorf("perf: publisher Protocol %q: want nats or redis", cfg.Protocol)
	case cfg.Addr == "":
		return nil, errors.New("perf: publisher Addr: required")
	case cfg.Rate < 0:
		return nil, fmt.Errorf("perf: publisher Rate %d: must be >= 0", cfg.Rate)
	case cfg.Source == nil:
		return nil, errors.New("perf: publisher Source: required")
	}
	p := &Publisher{cfg: cfg, now: cfg.Now, counts: map[uint32]uint64{}}
	if p.now == nil {
		p.now = func() int64 { return time.Now().UnixNano() }
	}
	return p, nil
}

// Published is the number of messages written so far.
func (p *Publisher) Published() uint64 { return p.published.Load() }

// Counts returns messages published per security code (after Run returns).
func (p *Publisher) Counts() map[uint32]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint32]uint64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Run connects and publishes until ctx ends or MaxMessages is reached, then
// flushes and confirms the server has processed everything (PING/PONG or a
// reply per PUBLISH) before returning.
func (p *Publisher) Run(ctx context.Context) error {
	return runNiced(p.cfg.Nice, func() error { return p.run(ctx) })
}

// dueStamp is the exchange stamp of message seq (1-based) sent at now by a
// publisher that started at start at rate msgs/s (0: no schedule): the
// simulator's rule, feed.LateStamp, against the message's place in the
// schedule.
func dueStamp(now, start int64, seq uint64, rate int) int64 {
	if rate <= 0 {
		return now
	}
	return feed.LateStamp(now, start+int64(float64(seq)*float64(time.Second)/float64(rate)))
}

func (p *Publisher) run(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return fmt.Errorf("perf: publisher: %w", err)
	}
	var wmu sync.Mutex // the writer and the PING answerer share nc
	w := bufio.NewWriterSize(nc, 64<<10)
	pongs := make(chan struct{}, 1)
	replies := atomic.Uint64{}
	readErr := make(chan error, 1) // one send, never blocks
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		readErr <- p.readReplies(nc, &wmu, w, pongs, &replies)
	}()
	defer func() {
		nc.Close() // ends readReplies
		readers.Wait()
	}()

	if p.cfg.Protocol == "nats" {
		wmu.Lock()
		w.WriteString("CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n")
		wmu.Unlock()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		m       wire.Msg
		frame   = make([]byte, 0, wire.MaxTextFrame)
		subj    = make([]byte, 0, 32)
		hdr     = make([]byte, 0, 64)
		seq     uint64
		start   = time.Now()
		startNs = p.now() // start on the stamps' clock
		tick    = time.NewTicker(time.Millisecond)
		stopped bool
	)
	defer tick.Stop()
	for !stopped {
		// How many to send now: the deficit against the target rate, in
		// bursts of at most 1 ms worth (max rate: 256 per burst).
		target := seq + 256
		if p.cfg.Rate > 0 {
			// Behind schedule (the server pushes back), catch up in bursts
			// of at most 10 ms worth so ctx is still checked between them.
			target = min(uint64(time.Since(start).Seconds()*float64(p.cfg.Rate)), seq+uint64(max(p.cfg.Rate/100, 256)))
		}
		if p.cfg.MaxMessages > 0 {
			target = min(target, p.cfg.MaxMessages)
		}
		wmu.Lock()
		for seq < target {
			seq++
			p.cfg.Source.Next(&m)
			frame = wire.AppendTextFrame(frame[:0], seq, &m, wire.Stamps{ExchSend: dueStamp(p.now(), startNs, seq, p.cfg.Rate)})
			subj = AppendSubject(subj[:0], m.Security)
			hdr = hdr[:0]
			if p.cfg.Protocol == "nats" {
				hdr = append(hdr, "PUB "...)
				hdr = append(hdr, subj...)
				hdr = append(hdr, ' ')
				hdr = strconv.AppendInt(hdr, int64(len(frame)), 10)
				hdr = append(hdr, "\r\n"...)
				w.Write(hdr)
				w.Write(frame)
				_, err = w.WriteString("\r\n")
			} else {
				hdr = append(hdr, "*3\r\n$7\r\nPUBLISH\r\n"...)
				hdr = appendBulkHeader(hdr, len(subj))
				hdr = append(hdr, subj...)
				hdr = append(hdr, "\r\n"...)
				hdr = appendBulkHeader(hdr, len(frame))
				w.Write(hdr)
				w.Write(frame)
				_, err = w.WriteString("\r\n")
			}
			p.counts[m.Security]++
			p.published.Store(seq)
			if err != nil {
				break
			}
		}
		if err == nil {
			err = w.Flush()
		}
		wmu.Unlock()
		if err != nil {
			return fmt.Errorf("perf: publish: %w", err)
		}
		if p.cfg.MaxMessages > 0 && seq >= p.cfg.MaxMessages {
			break
		}
		if p.cfg.Rate == 0 {
			select {
			case <-ctx.Done():
				stopped = true
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			stopped = true
		case <-tick.C:
		case err := <-readErr:
			return fmt.Errorf("perf: publisher: server: %w", err)
		}
	}
	return p.confirm(nc, &wmu, w, pongs, &replies, seq, readErr)
}

func appendBulkHeader(dst []byte, n int) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, "\r\n"...)
}

// confirm waits until the server has processed every message sent.
func (p *Publisher) confirm(nc net.Conn, wmu *sync.Mutex, w *bufio.Writer, pongs chan struct{}, replies *atomic.Uint64, sent uint64, readErr chan error) error {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	if p.cfg.Protocol == "nats" {
		wmu.Lock()
		w.WriteString("PING\r\n")
		err := w.Flush()
		wmu.Unlock()
		if err != nil {
			return fmt.Errorf("perf: publisher: %w", err)
		}
		select {
		case <-pongs:
			return nil
		case err := <-readErr:
			return fmt.Errorf("perf: publisher: awaiting PONG: %w", err)
		case <-deadline.C:
			return errors.New("perf: publisher: no PONG within 10s")
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for replies.Load() < sent {
		select {
		case err := <-readErr:
			return fmt.Errorf("perf: publisher: awaiting replies: %w", err)
		case <-deadline.C:
			return fmt.Errorf("perf: publisher: %d of %d replies within 10s", replies.Load(), sent)
		case <-tick.C:
		}
	}
	return nil
}

// readReplies reads what the server sends a publisher: NATS INFO/PING/PONG/
// -ERR, or one RESP integer reply per PUBLISH.
func (p *Publisher) readReplies(nc net.Conn, wmu *sync.Mutex, w *bufio.Writer, pongs chan struct{}, replies *atomic.Uint64) error {
	r := bufio.NewReaderSize(nc, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		switch {
		case p.cfg.Protocol == "redis":
			if line[0] == '-' {
				return fmt.Errorf("redis: %s", trimCRLF(line))
			}
			replies.Add(1)
		case string(line) == "PING\r\n":
			wmu.Lock()
			w.WriteString("PONG\r\n")
			err := w.Flush()
			wmu.Unlock()
			if err != nil {
				return err
			}
		case string(line) == "PONG\r\n":
			select {
			case pongs <- struct{}{}:
			default:
			}
		case len(line) > 4 && string(line[:4]) == "-ERR":
			return fmt.Errorf("nats: %s", trimCRLF(line))
		}
	}
}

func trimCRLF(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
