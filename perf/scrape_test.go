package perf

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestScrapeAll reads several samples in one request from a real HTTP
// endpoint: labels are not matched, a longer name sharing the prefix is
// not taken for a shorter one, the first sample of a name wins, and absent
// names and a down endpoint are simply missing.
func TestScrapeAll(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`# HELP x_total frames
# TYPE x_total counter
x_total_extra 99
x_total{loop="0"} 7
x_total{loop="1"} 8
y 2.5e+06
`))
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	m := ScrapeAll(addr, "x_total", "y", "absent")
	if len(m) != 2 || m["x_total"] != 7 || m["y"] != 2.5e6 {
		t.Fatalf("ScrapeAll = %v, want x_total 7, y 2.5e6 and nothing else", m)
	}
	if v, ok := Scrape(addr, "x_total_extra"); !ok || v != 99 {
		t.Fatalf("Scrape(x_total_extra) = %v, %v", v, ok)
	}
	if _, ok := Scrape(addr, "absent"); ok {
		t.Fatal("an absent name was found")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	if m := ScrapeAll(down, "x_total"); len(m) != 0 {
		t.Fatalf("a down endpoint gave %v", m)
	}
}
