// Package natspeer is the NATS side of `tickrelay perf`: an embedded NATS
// server in a process of its own (cmd/tickrelay-natspeer).
//
// It lives outside package perf so that only the peer binary links the NATS
// server: the tickrelay daemons carry none of it (nor the goroutine its
// process-usage package starts in init, polling /proc every second).
package natspeer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// ReadyPrefix starts the line Main prints on stdout once the server
// listens: "ready 127.0.0.1:4222". perf waits for the same prefix
// (perf.ReadyPrefix; TestSweepNATS runs the two together).
const ReadyPrefix = "ready "

// Main runs `tickrelay-natspeer -addr 127.0.0.1:0` until ctx ends: it
// prints ReadyPrefix+addr on stdout when listening.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tickrelay-natspeer", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:4222", "listen address (loopback only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("natspeer: unexpected arguments %q", fs.Args())
	}
	return Run(ctx, *addr, func(a net.Addr) { fmt.Fprintf(stdout, "%s%s\n", ReadyPrefix, a) })
}

// Run runs an embedded NATS server on addr (host must be loopback or
// empty, meaning 127.0.0.1) until ctx ends. ready gets the bound address.
// Limits stay at NATS defaults (64 MiB pending per client) so the peer runs
// the way its users run it.
func Run(ctx context.Context, addr string, ready func(net.Addr)) error {
	host, port, err := splitLoopback(addr)
	if err != nil {
		return err
	}
	opts := &natsserver.Options{
		Host:   host,
		Port:   port,
		NoLog:  true,
		NoSigs: true,
	}
	if port == 0 {
		opts.Port = natsserver.RANDOM_PORT
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natspeer: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return errors.New("natspeer: not ready within 10s")
	}
	if ready != nil {
		ready(s.Addr())
	}
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

// splitLoopback parses addr and insists on a loopback host: peers and
// daemons in a perf run bind 127.0.0.1 only.
func splitLoopback(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natspeer: addr %q: %w", addr, err)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("natspeer: addr %q: perf servers bind loopback only", addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("natspeer: addr %q: bad port", addr)
	}
	return host, port, nil
}
