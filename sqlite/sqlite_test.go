package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
	"github.com/verityhq/verity/storetest"
)

// MustOpenDB opens a migrated SQLite store in a temporary folder.
func MustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(filepath.Join(tb.TempDir(), "verity.db"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Migrate(context.Background()); err != nil {
		db.Close()
		tb.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) verity.Store { return MustOpenDB(t) })
}
