package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verityhq/verity"
	sqlite3 "modernc.org/sqlite/lib"
)

type (
	namedString string
	namedInt    int16
	namedBytes  []byte
)

var pointed = "p"

func openTestRawConn(t *testing.T, pragmas ...string) *rawConn {
	t.Helper()
	c, err := openRawConn("file:"+filepath.Join(t.TempDir(), "raw.db"), pragmas)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.close(); err != nil {
			t.Error("close:", err)
		}
	})
	return c
}

func mustExec(t *testing.T, c *rawConn, query string, args ...any) rawResult {
	t.Helper()
	res, err := c.exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}

// TestRawConnRoundTripsEveryType writes each argument type the stores pass
// and reads it back into each destination type they scan into, with the
// SQLite storage class database/sql and the modernc driver would give it.
func TestRawConnRoundTripsEveryType(t *testing.T) {
	c := openTestRawConn(t)
	mustExec(t, c, `CREATE TABLE v (id INTEGER PRIMARY KEY, x)`)
	long := strings.Repeat("é\x00x", 200_000) // grows the argument buffer past its first size
	for _, tt := range []struct {
		name    string
		arg     any
		class   string // typeof(x)
		scanned any    // into a destination of its own type
	}{
		{"string", "hello", "text", "hello"},
		{"empty string", "", "text", ""},
		{"long string with NUL and non-ASCII", long, "text", long},
		{"bytes", []byte{0, 1, 2, 255}, "blob", []byte{0, 1, 2, 255}},
		{"empty bytes", []byte{}, "blob", []byte{}},
		{"nil bytes", []byte(nil), "null", []byte(nil)},
		{"nil", nil, "null", []byte(nil)},
		{"int", 42, "integer", 42},
		{"int64 max", int64(math.MaxInt64), "integer", int64(math.MaxInt64)},
		{"int64 min", int64(math.MinInt64), "integer", int64(math.MinInt64)},
		{"int32", int32(-7), "integer", int32(-7)},
		{"uint32", uint32(math.MaxUint32), "integer", int64(math.MaxUint32)},
		{"bool true", true, "integer", true},
		{"bool false", false, "integer", false},
		{"float", 1.5, "real", 1.5},
		{"valid NullString", sql.NullString{String: "s", Valid: true}, "text", sql.NullString{String: "s", Valid: true}},
		{"null NullString", sql.NullString{}, "null", sql.NullString{}},
		{"valid NullInt64", sql.NullInt64{Int64: 9, Valid: true}, "integer", sql.NullInt64{Int64: 9, Valid: true}},
		{"null NullInt64", sql.NullInt64{}, "null", sql.NullInt64{}},
		{"NullBool", sql.NullBool{Bool: true, Valid: true}, "integer", sql.NullBool{Bool: true, Valid: true}},
		{"nil *sql.NullString", (*sql.NullString)(nil), "null", sql.NullString{}},
		{"named string", namedString("n"), "text", "n"},
		{"named int", namedInt(-3), "integer", int64(-3)},
		{"named bytes", namedBytes("b"), "blob", []byte("b")},
		{"pointer to string", &pointed, "text", "p"},
		{"nil pointer", (*string)(nil), "null", []byte(nil)},
		{"uint64", uint64(5), "integer", int64(5)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := mustExec(t, c, `INSERT INTO v (x) VALUES (?)`, tt.arg)
			id, _ := res.LastInsertId()
			if n, _ := res.RowsAffected(); n != 1 || id == 0 {
				t.Fatalf("insert: %d rows changed, last id %d", n, id)
			}
			var class string
			if err := c.queryRow(`SELECT typeof(x) FROM v WHERE id = ?`, id).Scan(&class); err != nil {
				t.Fatal(err)
			}
			if class != tt.class {
				t.Errorf("stored as %s, want %s", class, tt.class)
			}
			switch want := tt.scanned.(type) {
			case string:
				scanBack(t, c, id, want)
			case []byte:
				var v []byte
				if err := c.queryRow(`SELECT x FROM v WHERE id = ?`, id).Scan(&v); err != nil {
					t.Fatal(err)
				}
				if (v == nil) != (want == nil) || string(v) != string(want) {
					t.Errorf("scanned %#v, want %#v (nil and empty differ)", v, want)
				}
			case int:
				scanBack(t, c, id, want)
			case int64:
				scanBack(t, c, id, want)
			case int32:
				scanBack(t, c, id, want)
			case bool:
				scanBack(t, c, id, want)
			case float64:
				scanBack(t, c, id, want)
			case sql.NullString:
				scanBack(t, c, id, want)
			case sql.NullInt64:
				scanBack(t, c, id, want)
			case sql.NullBool:
				scanBack(t, c, id, want)
			default:
				t.Fatalf("no case for %T", want)
			}
		})
	}
}

// scanBack reads row id's x into a T and compares it with want.
func scanBack[T comparable](t *testing.T, c *rawConn, id int64, want T) {
	t.Helper()
	var got T
	if err := c.queryRow(`SELECT x FROM v WHERE id = ?`, id).Scan(&got); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if got != want {
		g, w := any(got), any(want)
		if s, ok := g.(string); ok && len(s) > 40 {
			g, w = len(s), len(any(want).(string))
		}
		t.Errorf("scanned %#v, want %#v", g, w)
	}
}

// TestRawConnArgumentsDoNotOverlap binds several text and blob arguments in
// one statement, in one buffer, and checks each arrives whole.
func TestRawConnArgumentsDoNotOverlap(t *testing.T) {
	c := openTestRawConn(t)
	var a, b, d string
	var blob []byte
	if err := c.queryRow(`SELECT ?, ?, ?, ?`, "first", []byte("second"), "", strings.Repeat("z", 1000)).
		Scan(&a, &blob, &b, &d); err != nil {
		t.Fatal(err)
	}
	if a != "first" || string(blob) != "second" || b != "" || d != strings.Repeat("z", 1000) {
		t.Fatalf("got %q %q %q %d bytes", a, blob, b, len(d))
	}
	// The caller's arguments are left as they were, not converted in place.
	args := []any{true, namedString("n")}
	if _, err := c.exec(`SELECT ?, ?`, args...); err != nil {
		t.Fatal(err)
	}
	if args[0] != true || args[1] != namedString("n") {
		t.Fatalf("the caller's arguments became %#v", args)
	}
	// The row's values were copied out: the next statement's arguments,
	// written over the same buffer, leave them alone.
	var e string
	if err := c.queryRow(`SELECT ?`, "XXXXXXXXXXXX").Scan(&e); err != nil {
		t.Fatal(err)
	}
	if a != "first" || string(blob) != "second" {
		t.Fatalf("earlier values changed to %q %q", a, blob)
	}
}

// TestRawConnRefusesBadInput checks that every misuse is an error that
// leaves the connection and its cached statement usable, never a panic.
func TestRawConnRefusesBadInput(t *testing.T) {
	c := openTestRawConn(t, "foreign_keys(1)")
	mustExec(t, c, `CREATE TABLE p (id TEXT PRIMARY KEY, n INTEGER)`)
	mustExec(t, c, `CREATE TABLE k (p TEXT NOT NULL REFERENCES p (id))`)
	const insert = `INSERT INTO p (id, n) VALUES (?, ?)`
	mustExec(t, c, insert, "a", nil)

	for _, tt := range []struct {
		name string
		run  func() error
		code string // from translate, "" for a plain error
	}{
		{"duplicate key", func() error { _, err := c.exec(insert, "a", 1); return err }, verity.ECONFLICT},
		{"foreign key", func() error { _, err := c.exec(`INSERT INTO k (p) VALUES (?)`, "nobody"); return err }, verity.ECONFLICT},
		{"syntax", func() error { _, err := c.exec(`INSERT INTO`); return err }, ""},
		{"no statement", func() error { _, err := c.exec(`-- nothing`); return err }, ""},
		{"too few arguments", func() error { _, err := c.exec(insert, "b"); return err }, ""},
		{"too many arguments", func() error { _, err := c.exec(insert, "b", 1, 2); return err }, ""},
		{"time.Time argument", func() error { _, err := c.exec(insert, "b", time.Now()); return err }, ""},
		{"struct argument", func() error { _, err := c.exec(insert, "b", struct{}{}); return err }, ""},
		{"uint64 past int64", func() error { _, err := c.exec(insert, "b", uint64(math.MaxUint64)); return err }, ""},
		{"two statements", func() error {
			_, err := c.exec(`INSERT INTO p (id, n) VALUES ('x', 1); INSERT INTO p (id, n) VALUES ('y', 2)`)
			return err
		}, ""},
		{"NULL into string", func() error {
			var s string
			return c.queryRow(`SELECT n FROM p WHERE id = ?`, "a").Scan(&s)
		}, ""},
		{"NULL into int64", func() error {
			var n int64
			return c.queryRow(`SELECT n FROM p WHERE id = ?`, "a").Scan(&n)
		}, ""},
		{"text into int", func() error {
			var n int
			return c.queryRow(`SELECT id FROM p WHERE id = ?`, "a").Scan(&n)
		}, ""},
		{"int32 overflow", func() error {
			var n int32
			return c.queryRow(`SELECT 1 << 40`).Scan(&n)
		}, ""},
		{"2 into bool", func() error {
			var b bool
			return c.queryRow(`SELECT 2`).Scan(&b)
		}, ""},
		{"too few destinations", func() error {
			var s string
			return c.queryRow(`SELECT id, n FROM p WHERE id = ?`, "a").Scan(&s)
		}, ""},
		{"unsupported destination", func() error {
			var d time.Time
			return c.queryRow(`SELECT id FROM p WHERE id = ?`, "a").Scan(&d)
		}, ""},
		{"no row", func() error {
			var s string
			return c.queryRow(`SELECT id FROM p WHERE id = ?`, "nobody").Scan(&s)
		}, verity.ENOTFOUND},
	} {
		err := tt.run()
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		var ve *verity.Error
		got := ""
		if errors.As(translate("test", err), &ve) {
			got = ve.Code
		}
		if got != tt.code {
			t.Errorf("%s: %v translates to code %q, want %q", tt.name, err, got, tt.code)
		}
	}
	// One statement with a trailing semicolon and comment is one statement.
	mustExec(t, c, `SELECT 1; -- done`)
	// Nothing above changed a row, and the cached statements still run.
	mustExec(t, c, insert, "b", 2)
	var n int
	if err := c.queryRow(`SELECT count(*) FROM p`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count: %d, %v; want 2 rows", n, err)
	}
}

// TestRawConnKeepsStatementsPrepared runs the check's read, whose join on
// "p.seq = (…)" makes its plan depend on a parameter, many times with
// changing arguments: SQLite must never prepare it again. Clearing the
// bindings after each run expires such a statement (SQLite 3.54), which made
// every consuming check parse and plan its read anew, five times slower.
func TestRawConnKeepsStatementsPrepared(t *testing.T) {
	db, svc, u := openWithUser(t, time.Now())
	err := db.q.runBetween(context.Background(), func(c *rawConn) error {
		for i := range 50 {
			id := u.ID
			if i%2 == 1 {
				id = "nobody"
			}
			if _, _, _, err := scanUserWithPIN(c.queryRow(userWithPINQuery, id, svc.ID)); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		s := c.stmts[userWithPINQuery]
		if s == nil {
			return errors.New("the read was not cached")
		}
		if n := sqlite3.Xsqlite3_stmt_status(c.tls, s.p, sqlite3.SQLITE_STMTSTATUS_REPREPARE, 0); n != 0 {
			t.Errorf("the read was prepared again %d times in 50 runs, want 0", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWriterConnectionSettings checks that the write queue's own connection,
// opened apart from database/sql, has every setting the durability and
// security of the writes rely on.
func TestWriterConnectionSettings(t *testing.T) {
	for _, tt := range []struct {
		sync Sync
		want int64
	}{{"", 2}, {SyncNormal, 1}} {
		db, err := OpenWith(filepath.Join(t.TempDir(), "v.db"), Options{Sync: tt.sync})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"synchronous":        tt.want, // 2 FULL, 1 NORMAL
			"foreign_keys":       int64(1),
			"secure_delete":      int64(1),
			"wal_autocheckpoint": int64(0),
			"journal_mode":       "wal",
			"cache_size":         int64(-16384),
			"busy_timeout":       int64(10000),
			"journal_size_limit": int64(67108864),
			"temp_store":         int64(2), // MEMORY: the statement journal never spills to a file
		}
		err = db.q.runBetween(context.Background(), func(c *rawConn) error {
			for name, w := range want {
				var got any
				if err := c.queryRow("PRAGMA " + name).Scan(&got); err != nil {
					return err
				}
				if got != w {
					t.Errorf("sync %q: PRAGMA %s = %v on the writer, want %v", tt.sync, name, got, w)
				}
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRawConnRefusesConcurrentUse runs statements on one connection from
// two goroutines at once, which the write queue never does: overlapping
// calls must get errConcurrentUse, not corrupt SQLite's memory.
func TestRawConnRefusesConcurrentUse(t *testing.T) {
	c := openTestRawConn(t)
	mustExec(t, c, `CREATE TABLE v (x TEXT)`)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range 2000 {
				var n int
				err := c.queryRow(`SELECT count(*) FROM v WHERE x <> ?`, strings.Repeat("x", i%300)).Scan(&n)
				if err == nil {
					_, err = c.exec(`INSERT INTO v (x) VALUES (?)`, "y")
				}
				switch {
				case errors.Is(err, errConcurrentUse):
					refused.Add(1)
				case err != nil:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d of 8000 statements refused as concurrent", refused.Load())
	// Whatever ran, ran whole: the connection still works.
	var n int
	if err := c.queryRow(`SELECT count(*) FROM v`).Scan(&n); err != nil {
		t.Fatal(err)
	}
}
