//go:build !linux

package sqlite

import "os"

// syncData flushes f's data to the disk (fsync(2), or its equivalent).
func syncData(f *os.File) error { return f.Sync() }
