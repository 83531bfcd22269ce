package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"tickrelay/feed"
	"tickrelay/internal/daemontest"
	"tickrelay/perf"
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

// TestRootPasswordFromEnv: the root daemon logs in with the password in
// $TICKRELAY_EXCHANGE_PASSWORD when -password is not given.
func TestRootPasswordFromEnv(t *testing.T) {
	cfg := feed.DefaultConfig()
	cfg.Addr, cfg.Rate, cfg.Symbols, cfg.Password, cfg.Logger = "127.0.0.1:0", 100, 5, "s3cret-pw", testLogger()
	ex, err := feed.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Start(t, "exchange", ex)
	<-ex.Ready()
	t.Setenv(envPassword, "s3cret-pw")
	admin := freeAddr(t)
	startProc(t, "root", rootArgs(ex.Addr(), "127.0.0.1:0", admin, "")...)
	waitFor(t, "items through the logon", 10*time.Second, func() bool {
		return perf.ScrapeAll(admin, "tickrelay_root_ring_head")["tickrelay_root_ring_head"] > 0
	})
}
