// Command tickrelay is the one binary of the relay: each daemon and tool is a
// subcommand with its own flags (see README).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it parses its own args and runs until ctx ends.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

// commands is filled by each subcommand file's init.
var commands = map[string]command{}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && isHelp(args[0]) {
		if len(args) > 1 && commands[args[1]].run != nil { // help X: X -h
			args = []string{args[1], "-h"}
		} else {
			usage(os.Stdout)
			return
		}
	}
	if len(args) == 0 || commands[args[0]].run == nil {
		if len(args) > 0 {
			fmt.Fprintf(os.Stderr, "tickrelay: unknown command %q\n\n", args[0])
		}
		usage(os.Stderr)
		os.Exit(2)
	}
	// The first SIGINT/SIGTERM cancels ctx and the daemon drains; a second
	// one kills the process through the default handler.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	if err := commands[args[0]].run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) { // the usage went to stdout
			return
		}
		fmt.Fprintf(os.Stderr, "tickrelay %s: %v\n", args[0], err)
		os.Exit(1)
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tickrelay <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'tickrelay <command> -h' for its flags")
}
