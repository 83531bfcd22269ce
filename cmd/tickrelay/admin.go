package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminRoute is a daemon's own admin endpoint.
type adminRoute struct {
	pattern string // http.ServeMux pattern, e.g. "POST /drain"
	h       http.HandlerFunc
}

// serveAdmin serves /metrics (reg), /healthz, /debug/pprof/ and routes on
// addr until ctx ends. An empty addr disables it.
func serveAdmin(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger, routes ...adminRoute) error {
	if addr == "" {
		return nil
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiling (loopback admin only in practice): go tool pprof http://ADDR/debug/pprof/profile
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	health := true
	for _, r := range routes {
		mux.HandleFunc(r.pattern, r.h)
		health = health && r.pattern != "/healthz"
	}
	if health { // a daemon's own /healthz wins
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	log.Info("admin listening", "addr", ln.Addr().String())
	return nil
}
