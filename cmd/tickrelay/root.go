package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/root"
)

func init() {
	commands["root"] = command{"root daemon: exchange session, ring, relay to children", runRoot}
}

func runRoot(ctx context.Context, args []string) error {
	def := root.DefaultConfig()
	fs := newFlags("root")
	exchange := fs.String("exchange", def.ExchangeAddr, "exchange feed address host:port")
	user := fs.String("user", def.User, "exchange logon user (<= 16 bytes)")
	password := fs.String("password", def.Password, "exchange logon password (<= 16 bytes)")
	addr := fs.String("addr", def.Addr, "relay listen address for children")
	ringSize := fs.Int("ring-size", def.RingSize, "items kept in memory (power of two)")
	loops := fs.Int("loops", def.Loops, "gnet event loops for children (0 = one per CPU)")
	admin := fs.String("admin", "127.0.0.1:9101", "admin address: /metrics, /healthz (empty = off)")
	// Journal flags (Store) go here; build the store after parseFlags and
	// set cfg.Store before root.New.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	cfg := def
	cfg.ExchangeAddr, cfg.User, cfg.Password, cfg.Addr = *exchange, *user, *password, *addr
	cfg.RingSize, cfg.Loops = *ringSize, *loops
	cfg.Logger, cfg.Registerer = log, reg
	r, err := root.New(cfg)
	if err != nil {
		return err
	}
	if err := serveAdmin(ctx, *admin, reg, log); err != nil {
		return err
	}
	return r.Run(ctx)
}
