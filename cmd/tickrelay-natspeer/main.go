// Command tickrelay-natspeer is the NATS peer of `tickrelay perf`: an
// embedded NATS server on a loopback address, run until SIGINT or SIGTERM.
// It prints "ready ADDR" on stdout once it listens.
//
//	tickrelay-natspeer -addr 127.0.0.1:0
//
// A binary of its own so that the tickrelay daemons do not link a NATS server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"tickrelay/perf/natspeer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := natspeer.Main(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tickrelay-natspeer:", err)
		os.Exit(1)
	}
}
