//go:build !unix

package sqlite

// offHeap returns n zeroed bytes from the heap, where there is no mmap(2).
func offHeap(n int) (b []byte, free func()) { return make([]byte, n), func() {} }
