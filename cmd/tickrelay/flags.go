package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// newFlags returns a flag set with the flags every subcommand shares:
// -config (a file of "flag = value" lines) and -log-level.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tickrelay "+name, flag.ContinueOnError)
	fs.String("config", "", "optional config file: one `flag = value` per line, # comments; command-line flags win")
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	return fs
}

// parseFlags parses args, applying the config file (if any) first so that
// flags given on the command line override it.
// -h and -help print the usage to stdout and return flag.ErrHelp (exit 0);
// a bad flag is returned as the error alone (main prints it).
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs)
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return applyConfig(fs, bytes.NewReader(data), path, set)
}

// printUsage prints fs's flags to stdout.
func printUsage(fs *flag.FlagSet) {
	fs.SetOutput(os.Stdout)
	defer fs.SetOutput(io.Discard)
	fmt.Fprintf(os.Stdout, "usage: %s [flags]\n\nflags:\n", fs.Name())
	fs.PrintDefaults()
}

// applyConfig sets each "name = value" line's flag unless skip[name].
func applyConfig(fs *flag.FlagSet, r io.Reader, path string, skip map[string]bool) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		if !ok || name == "" {
			return fmt.Errorf("config %s:%d: want `flag = value`, got %q", path, n, line)
		}
		if name == "config" {
			return fmt.Errorf("config %s:%d: a config file cannot name another", path, n)
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("config %s:%d: unknown flag %q", path, n, name)
		}
		if skip[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("config %s:%d: %s: %w", path, n, name, err)
		}
	}
	return sc.Err()
}

// newLogger builds the process logger from -log-level.
func newLogger(fs *flag.FlagSet) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(fs.Lookup("log-level").Value.String())); err != nil {
		return nil, errors.New("bad -log-level: " + err.Error())
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// epochFlag is an epoch (trading session id) flag: 0..4294967295.
type epochFlag struct{ p *uint32 }

// epochVar defines an epoch flag stored in *p (default 0).
func epochVar(fs *flag.FlagSet, p *uint32, name, usage string) { fs.Var(epochFlag{p}, name, usage) }

func (f epochFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*f.p), 10)
}

func (f epochFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("an epoch is an integer in 0..%d", uint32(1<<32-1))
	}
	*f.p = uint32(n)
	return nil
}
