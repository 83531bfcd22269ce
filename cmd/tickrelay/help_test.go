package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestHelpExitsZero: -h, --help and help print the usage to stdout and exit
// 0, for the binary and every subcommand (replay's own subcommands too); an
// unknown command or flag exits non-zero with the error on stderr.
func TestHelpExitsZero(t *testing.T) {
	bin := tickrelayBin(t)
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	cases := [][]string{{"-h"}, {"--help"}, {"help"}, {"help", "child"}, {"replay", "-h"},
		{"replay", "record", "-h"}, {"replay", "serve", "--help"}, {"replay", "info", "-h"}}
	for name := range commands {
		cases = append(cases, []string{name, "-h"}, []string{name, "--help"})
	}
	for _, args := range cases {
		out, errOut, code := run(args...)
		if code != 0 || !strings.Contains(out, "usage: tickrelay") || errOut != "" {
			t.Errorf("%q: exit %d, stdout %.60q, stderr %.80q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{}, {"bogus"}, {"child", "-bogus"}, {"replay", "bogus"}} {
		if _, errOut, code := run(args...); code == 0 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// TestSizeFlags: byte and count flags take units as the README writes them.
func TestSizeFlags(t *testing.T) {
	for in, want := range map[string]uint64{"8GiB": 8 << 30, "4MiB": 4 << 20, "64KiB": 64 << 10, "10M": 10_000_000,
		"65536": 65536, "2k": 2000, "1gb": 1e9, "512B": 512, "3 MiB": 3 << 20, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "4x", "MiB", "1.5GiB", "99999999999TiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	fs := newFlags("test")
	var n int
	var u uint64
	sizeVar(fs, &n, "max-pending", 4<<20, "bytes")
	sizeVar(fs, &u, "retain", 10_000_000, "count")
	if err := parseFlags(fs, []string{"-max-pending", "16MiB", "-retain", "2M"}); err != nil || n != 16<<20 || u != 2_000_000 {
		t.Fatalf("parsed %d %d: %v", n, u, err)
	}
	if got := fs.Lookup("max-pending").DefValue; got != "4194304" {
		t.Errorf("default shown as %q", got)
	}
}

// TestREADMEFlagTable: every flag of every daemon (and sub) is in its row
// of the README's flag table (-config and -log-level, which every command
// takes, are said above it).
func TestREADMEFlagTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for _, cmd := range []string{"exchange", "root", "child", "sub"} {
		var row string
		for _, l := range strings.Split(string(readme), "\n") {
			if strings.HasPrefix(l, "| `"+cmd+"` | `-") {
				row = l
				break
			}
		}
		if row == "" {
			t.Fatalf("no README flag table row for %s", cmd)
		}
		out, err := exec.Command(tickrelayBin(t), cmd, "-h").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			f := m[1]
			if f == "config" || f == "log-level" {
				continue
			}
			if !regexp.MustCompile(`[ \x60(|/]-` + regexp.QuoteMeta(f) + `[ \x60|/]`).MatchString(row) {
				t.Errorf("README: the %s row lacks -%s", cmd, f)
			}
		}
	}
}
