package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterUnregister(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	g, err := Register(reg, a, b)
	if err != nil {
		t.Fatal(err)
	}
	// A second group with a clashing name fails and leaves nothing behind.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "c"})
	dup := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	if _, err := Register(reg, c, dup); err == nil {
		t.Fatal("registering a clashing name succeeded")
	}
	if reg.Unregister(c) {
		t.Fatal("c stayed registered after the failed group")
	}
	g.Unregister()
	if _, err := Register(reg, a, b); err != nil {
		t.Fatalf("after Unregister the names should be free: %v", err)
	}
	var nilGroup *Group
	nilGroup.Unregister()
	if g, err := Register(nil, a); err != nil || g == nil {
		t.Fatalf("nil registerer: %v", err)
	}
}
