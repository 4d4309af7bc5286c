package sqlite

import (
	"os"
	"syscall"
)

// syncData flushes f's data to the disk with fdatasync(2), as SQLite's own
// commits do here (see OpenWith): the file's new mtime needs no journal
// commit of its own.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
