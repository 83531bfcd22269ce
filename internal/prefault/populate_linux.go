package prefault

import "golang.org/x/sys/unix"

// populate asks the kernel to populate b, page-aligned, for writing.
func populate(b []byte) bool {
	return unix.Madvise(b, unix.MADV_POPULATE_WRITE) == nil
}
