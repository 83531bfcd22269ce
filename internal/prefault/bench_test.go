//go:build linux

package prefault

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkFirstWrite fills fresh memory (new from the kernel, as a
// daemon's big buffers are) with and without Populate first.
func BenchmarkFirstWrite(b *testing.B) {
	const size = 16 << 20
	for _, pop := range []bool{false, true} {
		name := "faults"
		if pop {
			name = "populated"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
				if err != nil {
					b.Fatal(err)
				}
				if pop {
					Populate(buf)
				}
				for i := 0; i < len(buf); i += 64 {
					buf[i] = 1
				}
				unix.Munmap(buf)
			}
		})
	}
}
