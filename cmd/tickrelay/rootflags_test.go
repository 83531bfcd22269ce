package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestRootDurabilityFlags(t *testing.T) {
	t.Setenv(envPG, "")
	t.Setenv("STATE_DIRECTORY", "")
	parse := func(args ...string) (*rootFlags, error) {
		fs := flag.NewFlagSet("root", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := addDurabilityFlags(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return f, f.validate()
	}
	f, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if f.journal != "tickrelay-root.journal" || f.sync != "always" || f.postgres != "" || f.retainBytes != defaultRetainBytes {
		t.Fatalf("defaults: %+v", f)
	}
	t.Setenv("STATE_DIRECTORY", "/var/lib/tickrelay:/var/lib/other")
	if f, _ := parse(); f.journal != "/var/lib/tickrelay/root.journal" {
		t.Fatalf("under systemd: journal %q", f.journal)
	}
	t.Setenv(envPG, "postgres://db/x")
	if f, err := parse(); err != nil || f.postgres != "postgres://db/x" {
		t.Fatalf("DSN from $%s: %q, %v", envPG, f.postgres, err)
	}
	for _, bad := range [][]string{
		{"-sync", "sometimes"},
		{"-commit-every", "0s"},
		{"-commit-items", "0"},
		{"-retain-age", "-1s"},
		{"-journal", "", "-postgres", "postgres://db/x"},
	} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), "-") {
			t.Errorf("%q: accepted (%v)", bad, err)
		}
	}
}
