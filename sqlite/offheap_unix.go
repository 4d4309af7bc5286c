//go:build unix

package sqlite

import "syscall"

// offHeap returns n zeroed bytes that Go's garbage collector neither scans
// nor counts (an anonymous mapping, resident as it is first written), and
// the function that returns them. They must never hold a Go pointer.
func offHeap(n int) (b []byte, free func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil { // no mapping: the heap serves, counted by the collector
		return make([]byte, n), func() {}
	}
	return b, func() { syscall.Munmap(b) }
}
