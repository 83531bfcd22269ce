package child

import "testing"

func TestClockEstimate(t *testing.T) {
	c := NewClock(4)
	if _, _, ok := c.Estimate(); ok {
		t.Fatal("estimate before any sample")
	}
	// Root clock 1000 ns ahead; one-way delays vary; the root takes 10 ns.
	const off = 1000
	add := func(t0, up, down int64) {
		t1 := t0 + up + off
		t2 := t1 + 10
		t3 := t2 - off + down
		if _, ok := c.Add(t0, t1, t2, t3); !ok {
			t.Fatalf("sample rejected: %d %d %d", t0, up, down)
		}
	}
	add(0, 500, 100)    // rtt 600, offset error +200
	add(10_000, 50, 50) // rtt 100, exact
	add(20_000, 300, 900)
	o, b, ok := c.Estimate()
	if !ok || o != off || b != 50 {
		t.Fatalf("estimate %d ± %d (%v), want %d ± 50", o, b, ok, off)
	}
	// The best sample ages out of the 4-sample window.
	add(30_000, 200, 100)
	add(40_000, 200, 100)
	add(50_000, 400, 100)
	add(60_000, 210, 100)
	o, b, _ = c.Estimate()
	if b != 150 || o != off+50 {
		t.Fatalf("after aging: %d ± %d, want %d ± 150", o, b, off+50)
	}
	// Negative round trip: rejected, estimate unchanged.
	if _, ok := c.Add(100, 50, 60, 90); ok {
		t.Fatal("impossible stamps accepted")
	}
	if o2, b2, _ := c.Estimate(); o2 != o || b2 != b {
		t.Fatal("rejected sample changed the estimate")
	}
}

func TestClockSampleMath(t *testing.T) {
	s, ok := NewClock(1).Add(100, 160, 170, 130)
	// offset = ((160-100)+(170-130))/2 = 50; rtt = 30-10 = 20
	if !ok || s.Offset != 50 || s.RTT != 20 {
		t.Fatalf("%+v %v", s, ok)
	}
}
