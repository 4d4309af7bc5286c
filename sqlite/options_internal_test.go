package sqlite

import (
	"path/filepath"
	"runtime"
	"testing"

	"modernc.org/sqlite"
)

// TestSyncOption checks that each durability mode reaches SQLite's own
// setting on the writer connections (PRAGMA synchronous: 1 NORMAL, 2 FULL),
// and that a misspelt mode is refused rather than silently weakened.
func TestSyncOption(t *testing.T) {
	for _, tt := range []struct {
		sync Sync
		want int
	}{{"", 2}, {SyncFull, 2}, {SyncNormal, 1}} {
		db, err := OpenWith(filepath.Join(t.TempDir(), "v.db"), Options{Sync: tt.sync})
		if err != nil {
			t.Fatalf("OpenWith(%q): %v", tt.sync, err)
		}
		var got int
		if err := db.writer.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != tt.want {
			t.Errorf("sync %q: PRAGMA synchronous = %d, want %d", tt.sync, got, tt.want)
		}
	}
	if db, err := OpenWith(filepath.Join(t.TempDir(), "v.db"), Options{Sync: "off"}); err == nil {
		db.Close()
		t.Fatal(`OpenWith(sync "off") succeeded, want an error`)
	}
}

// TestWriterCacheSize checks that the writer pool's page cache is the larger
// one (the write queue's own connection: TestWriterConnectionSettings), and
// that readers keep SQLite's default.
func TestWriterCacheSize(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var writer, reader int
	if err := db.writer.QueryRow("PRAGMA cache_size").Scan(&writer); err != nil {
		t.Fatal(err)
	}
	if err := db.reader.QueryRow("PRAGMA cache_size").Scan(&reader); err != nil {
		t.Fatal(err)
	}
	if writer != -16384 || reader != -2000 {
		t.Fatalf("PRAGMA cache_size: writer %d, reader %d; want -16384 (16 MiB) and SQLite's default -2000", writer, reader)
	}
}

// TestCommitsSyncWithFdatasync checks that opening a store switches the
// library to fdatasync(2) (where the platform has it), as SQLite's own Linux
// builds sync.
func TestCommitsSyncWithFdatasync(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("fdatasync is switched on only where modernc.org/sqlite offers it; checked on Linux")
	}
	prev, err := sqlite.Fdatasync(false)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite.Fdatasync(prev)
	db, err := Open(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if !sqlite.FdatasyncEnabled() {
		t.Fatal("after Open, SQLite still commits with fsync; want fdatasync")
	}
}
