package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var free Bucket
	for range 1000 {
		if ok, _ := free.Take(0); !ok {
			t.Fatal("the zero bucket refused")
		}
	}
	b := New(10, 3, 0) // 10/s, burst 3
	for i := range 3 {
		if ok, _ := b.Take(0); !ok {
			t.Fatalf("burst token %d refused", i)
		}
	}
	ok, wait := b.Take(0)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("4th: %v %v, want refused for 100ms", ok, wait)
	}
	if ok, _ := b.Take(int64(50 * time.Millisecond)); ok {
		t.Fatal("a token after 50ms at 10/s")
	}
	if ok, _ := b.Take(int64(100 * time.Millisecond)); !ok {
		t.Fatal("no token after 100ms at 10/s")
	}
	// A long quiet refills to the burst, no more.
	n := 0
	for ok, _ := b.Take(int64(time.Hour)); ok; ok, _ = b.Take(int64(time.Hour)) {
		n++
	}
	if n != 3 {
		t.Fatalf("%d tokens after an hour, want the burst of 3", n)
	}
}
