package sqlite

import (
	"path/filepath"
	"testing"
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
