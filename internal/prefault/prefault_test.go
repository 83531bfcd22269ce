//go:build linux

package prefault

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapped returns fresh anonymous memory of n pages and how many of its
// pages are resident.
func mapped(t *testing.T, pages int) (b []byte, resident func() int) {
	t.Helper()
	b, err := unix.Mmap(-1, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b, func() int {
		vec := make([]byte, pages)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n
	}
}

func TestPopulate(t *testing.T) {
	const pages = 256
	b, resident := mapped(t, pages)
	if n := resident(); n != 0 {
		t.Fatalf("fresh mapping has %d resident pages, want 0", n)
	}
	// An unaligned window: partial pages at both ends, whole ones between.
	Populate(b[100 : len(b)-100])
	if n := resident(); n != pages {
		t.Fatalf("after Populate %d of %d pages resident", n, pages)
	}
	for i, c := range b {
		if c != 0 {
			t.Fatalf("byte %d = %d, want the fresh zero", i, c)
		}
	}
}

func TestPopulateSmall(t *testing.T) {
	b, resident := mapped(t, 2)
	Populate(b[pageSize-10 : pageSize+10]) // no whole page inside
	if n := resident(); n != 2 {
		t.Fatalf("after Populate %d of 2 pages resident", n)
	}
	Populate(nil)
}

func TestTouch(t *testing.T) {
	b, resident := mapped(t, 8)
	touch(b)
	if n := resident(); n != 8 {
		t.Fatalf("after touch %d of 8 pages resident", n)
	}
}

func TestSlice(t *testing.T) {
	type slot struct {
		p    *int
		a, b int64
	}
	s := make([]slot, 1<<16) // 1.5 MiB: spans whole pages
	Slice(s)
	x := 7
	s[len(s)-1] = slot{p: &x, a: 1, b: 2}
	for i := range s[:len(s)-1] {
		if s[i] != (slot{}) {
			t.Fatalf("slot %d = %+v, want zero", i, s[i])
		}
	}
	Slice([]slot(nil))
}

func TestGrow(t *testing.T) {
	s := make([]int64, 3, 4)
	copy(s, []int64{1, 2, 3})
	if g := Grow(s, 1); unsafe.SliceData(g) != unsafe.SliceData(s) {
		t.Fatal("Grow reallocated with room to spare")
	}
	g := Grow(s, 100)
	if len(g) != 3 || cap(g) < 103 || g[0] != 1 || g[1] != 2 || g[2] != 3 {
		t.Fatalf("Grow(s, 100): len %d cap %d %v", len(g), cap(g), g)
	}
	if g2 := Grow(g, cap(g)-len(g)+1); cap(g2) < 2*cap(g) {
		t.Fatalf("Grow by one past cap %d gave cap %d: growth not geometric", cap(g), cap(g2))
	}
	if testing.AllocsPerRun(100, func() { _ = Grow(g, 1) }) != 0 {
		t.Fatal("Grow allocates with room to spare")
	}
}
