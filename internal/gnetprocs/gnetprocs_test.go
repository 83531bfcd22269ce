package gnetprocs

import (
	"os"
	"runtime"
	"testing"
)

func TestReserve(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	if os.Getenv("GOMAXPROCS") != "" {
		if got := Reserve(3); got != was {
			t.Fatalf("GOMAXPROCS set in the environment: Reserve changed it to %d", got)
		}
		return
	}
	runtime.GOMAXPROCS(runtime.NumCPU())
	if got, want := Reserve(3), runtime.NumCPU()+3; got != want {
		t.Fatalf("Reserve(3) = %d, want NumCPU+3 = %d", got, want)
	}
	if got := Reserve(1); got != runtime.NumCPU()+3 {
		t.Fatalf("Reserve(1) lowered GOMAXPROCS to %d", got)
	}
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	if got := Reserve(3); got != 1 {
		t.Fatalf("explicit GOMAXPROCS=1 overridden: %d", got)
	}
}
