package sqlite

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// rawConn is the single writer's connection, driven through SQLite's C API
// as modernc.org/sqlite/lib transpiles it to Go, not through database/sql.
// Every write waits for the one goroutine that owns it, and in profiles of
// the check benchmark about two fifths of that goroutine's CPU went to
// database/sql and the driver around each statement rather than to SQLite:
// converting arguments to driver values and back, naming every column of
// every result, a C allocation per text argument, and a connection mutex
// locked on every call. Here a statement binds its arguments from one
// reusable C buffer and reads its columns straight into the caller's
// variables, and the connection is opened without SQLite's own mutex
// (SQLITE_OPEN_NOMUTEX): only the writer goroutine uses it.
//
// It serves only what the write queue needs: cached statements run with
// Exec (a Result of rows changed) and QueryRow (one row, scanned like
// database/sql's). A rawConn is not safe for concurrent use.
type rawConn struct {
	tls   *libc.TLS
	db    uintptr // sqlite3*
	stmts map[string]*rawStmt
	// out and tail are C cells for the API's out-parameters (the handle
	// of an open; the new statement of a prepare and where it ended).
	out, tail uintptr
	// args holds the text and blob arguments of the statement being run,
	// bound as SQLITE_STATIC (SQLite reads them in place). A statement keeps
	// pointing into it after its run, when the buffer already holds another
	// statement's arguments, but SQLite reads bound values only while
	// stepping, and every run binds every parameter anew first.
	args    uintptr
	argsCap int
	// values is bind's scratch: the arguments converted, so that the
	// caller's slice is left as it was.
	values []any
	// oldArgs are the buffers args outgrew. Statements may still point
	// into them, so they are freed only with the connection: SQLite would
	// read a stale binding only if a statement ran without being bound
	// anew, which bind never lets happen, and if it ever did, it would read
	// old arguments rather than freed memory. Each is at most half the
	// next, so together they are smaller than args.
	oldArgs []uintptr
	// busy is set while a statement runs. Opened without SQLite's mutex,
	// the connection would corrupt memory if two goroutines used it at
	// once (a wtx or row kept past its write, say); such a use gets
	// errConcurrentUse instead.
	busy atomic.Bool
}

// errConcurrentUse answers a statement run while another runs on the same
// rawConn: a programming error, refused rather than let SQLite corrupt its
// memory.
var errConcurrentUse = errors.New("sqlite: the writer connection used by two goroutines at once")

// enter marks the connection busy for one statement; leave ends it.
func (c *rawConn) enter() error {
	if !c.busy.CompareAndSwap(false, true) {
		return errConcurrentUse
	}
	return nil
}

func (c *rawConn) leave() { c.busy.Store(false) }

// rawStmt is a statement prepared once on a rawConn and kept for reuse.
type rawStmt struct {
	p      uintptr // sqlite3_stmt*
	params int
}

// sqliteError is an error SQLite returned on a rawConn. Code is the
// extended result code (SQLITE_CONSTRAINT_UNIQUE, …), as modernc's Error
// reports it, so that translate reads both alike.
type sqliteError struct {
	code int
	msg  string
}

func (e *sqliteError) Error() string { return e.msg }

// Code returns SQLite's extended result code.
func (e *sqliteError) Code() int { return e.code }

// openRawConn opens uri (a file: URI) read-write, creating it if need be,
// and runs each of pragmas on the new connection.
func openRawConn(uri string, pragmas []string) (_ *rawConn, err error) {
	c := &rawConn{tls: libc.NewTLS(), stmts: make(map[string]*rawStmt)}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	cell := int(unsafe.Sizeof(uintptr(0)))
	if c.out, err = c.malloc(2 * cell); err != nil {
		return nil, err
	}
	c.tail = c.out + uintptr(cell)
	name, err := libc.CString(uri)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(c.tls, name)
	rc := sqlite3.Xsqlite3_open_v2(c.tls, name, c.out,
		sqlite3.SQLITE_OPEN_READWRITE|sqlite3.SQLITE_OPEN_CREATE|sqlite3.SQLITE_OPEN_URI|sqlite3.SQLITE_OPEN_NOMUTEX, 0)
	c.db = *(*uintptr)(cPointer(c.out)) // set even on failure, for its message and close
	if rc != sqlite3.SQLITE_OK {
		return nil, c.error(rc)
	}
	// Constraint failures then say which constraint (translate maps
	// SQLITE_CONSTRAINT_UNIQUE and _FOREIGNKEY to ECONFLICT).
	sqlite3.Xsqlite3_extended_result_codes(c.tls, c.db, 1)
	for _, p := range pragmas {
		if _, err := c.exec("PRAGMA " + p); err != nil {
			return nil, fmt.Errorf("PRAGMA %s: %w", p, err)
		}
	}
	// PRAGMA statements are not worth keeping prepared.
	c.finalizeAll()
	return c, nil
}

// checkWritable returns an error, SQLITE_READONLY or the one SQLite gave,
// unless the connection can write its database. BEGIN IMMEDIATE takes the
// write lock, which fails where the WAL cannot be written; but on a file
// SQLite opened read-only it quietly begins a read transaction instead, so
// sqlite3_db_readonly is asked too. Nothing is written.
func (c *rawConn) checkWritable() error {
	if _, err := c.exec("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	main, err := libc.CString("main")
	if err != nil {
		c.exec("ROLLBACK")
		return err
	}
	readOnly := sqlite3.Xsqlite3_db_readonly(c.tls, c.db, main) == 1
	libc.Xfree(c.tls, main)
	if _, err := c.exec("ROLLBACK"); err != nil {
		return err
	}
	if readOnly {
		return &sqliteError{code: sqlite3.SQLITE_READONLY, msg: fmt.Sprintf("%s (%d)",
			libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, sqlite3.SQLITE_READONLY)), sqlite3.SQLITE_READONLY)}
	}
	return nil
}

// close finalizes every statement and closes the connection.
func (c *rawConn) close() error {
	c.finalizeAll()
	var err error
	if c.db != 0 {
		if rc := sqlite3.Xsqlite3_close_v2(c.tls, c.db); rc != sqlite3.SQLITE_OK {
			err = c.error(rc)
		}
		c.db = 0
	}
	c.free(&c.args)
	c.argsCap = 0
	for i := range c.oldArgs {
		c.free(&c.oldArgs[i])
	}
	c.oldArgs = nil
	c.free(&c.out)
	c.tail = 0
	if c.tls != nil {
		c.tls.Close()
		c.tls = nil
	}
	return err
}

func (c *rawConn) finalizeAll() {
	for q, s := range c.stmts {
		sqlite3.Xsqlite3_finalize(c.tls, s.p)
		delete(c.stmts, q)
	}
}

// prepare returns query's statement, preparing it on first use.
func (c *rawConn) prepare(query string) (*rawStmt, error) {
	if s := c.stmts[query]; s != nil {
		return s, nil
	}
	z, err := libc.CString(query)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(c.tls, z)
	rc := sqlite3.Xsqlite3_prepare_v3(c.tls, c.db, z, -1, sqlite3.SQLITE_PREPARE_PERSISTENT, c.out, c.tail)
	if rc != sqlite3.SQLITE_OK {
		return nil, c.error(rc)
	}
	p := *(*uintptr)(cPointer(c.out))
	if p == 0 { // only whitespace or a comment
		return nil, fmt.Errorf("sqlite: no statement in %q", query)
	}
	// SQLite prepares the first statement of the text and points past it.
	// A second one would be silently dropped (where database/sql's driver
	// runs them all), and a write acknowledged with half of it missing.
	rest := *(*uintptr)(cPointer(c.tail))
	rc = sqlite3.Xsqlite3_prepare_v3(c.tls, c.db, rest, -1, 0, c.out, 0)
	if next := *(*uintptr)(cPointer(c.out)); rc != sqlite3.SQLITE_OK || next != 0 {
		sqlite3.Xsqlite3_finalize(c.tls, next)
		sqlite3.Xsqlite3_finalize(c.tls, p)
		return nil, fmt.Errorf("sqlite: %q holds more than one statement", query)
	}
	s := &rawStmt{p: p, params: int(sqlite3.Xsqlite3_bind_parameter_count(c.tls, p))}
	c.stmts[query] = s
	return s, nil
}

// rawResult is what Exec reports, as database/sql's Result does.
type rawResult struct{ changed, lastID int64 }

func (r rawResult) RowsAffected() (int64, error) { return r.changed, nil }
func (r rawResult) LastInsertId() (int64, error) { return r.lastID, nil }

// exec runs query with args to completion (rows it returns are skipped).
func (c *rawConn) exec(query string, args ...any) (rawResult, error) {
	if err := c.enter(); err != nil {
		return rawResult{}, err
	}
	defer c.leave()
	s, err := c.start(query, args)
	if err != nil {
		return rawResult{}, err
	}
	defer c.reset(s)
	for {
		switch rc := sqlite3.Xsqlite3_step(c.tls, s.p); rc {
		case sqlite3.SQLITE_ROW:
		case sqlite3.SQLITE_DONE:
			return rawResult{changed: int64(sqlite3.Xsqlite3_changes64(c.tls, c.db)),
				lastID: int64(sqlite3.Xsqlite3_last_insert_rowid(c.tls, c.db))}, nil
		default:
			return rawResult{}, c.error(rc)
		}
	}
}

// rawRow is one row to read. Unlike database/sql's Row, its statement runs
// when Scan is called, not when queryRow is: a row that is never scanned
// leaves nothing open, and one scanned after another statement sees that
// statement's changes. Scan it at once.
type rawRow struct {
	c     *rawConn
	query string
	args  []any
}

// queryRow prepares a one-row read; Scan runs it.
func (c *rawConn) queryRow(query string, args ...any) *rawRow {
	return &rawRow{c: c, query: query, args: args}
}

// Scan runs the read and copies its first row's columns into dest, as
// database/sql's Row.Scan does; sql.ErrNoRows when there is no row.
func (r *rawRow) Scan(dest ...any) error {
	c := r.c
	if err := c.enter(); err != nil {
		return err
	}
	defer c.leave()
	s, err := c.start(r.query, r.args)
	if err != nil {
		return err
	}
	defer c.reset(s)
	switch rc := sqlite3.Xsqlite3_step(c.tls, s.p); rc {
	case sqlite3.SQLITE_ROW:
	case sqlite3.SQLITE_DONE:
		return sql.ErrNoRows
	default:
		return c.error(rc)
	}
	// Counted now, not at prepare: a schema change prepares it again.
	if cols := int(sqlite3.Xsqlite3_column_count(c.tls, s.p)); len(dest) != cols {
		return fmt.Errorf("sqlite: expected %d destination arguments in Scan, not %d", cols, len(dest))
	}
	for i, d := range dest {
		if err := c.scanColumn(s, i, d); err != nil {
			return fmt.Errorf("sqlite: Scan error on column index %d: %w", i, err)
		}
	}
	return nil
}

// start prepares query (or takes it from the cache) and binds args.
func (c *rawConn) start(query string, args []any) (*rawStmt, error) {
	s, err := c.prepare(query)
	if err != nil {
		return nil, err
	}
	if len(args) != s.params {
		return nil, fmt.Errorf("sqlite: %d arguments for %d parameters", len(args), s.params)
	}
	if err := c.bind(s, args); err != nil {
		c.reset(s)
		return nil, err
	}
	return s, nil
}

// reset readies s for its next run. It leaves the bindings in place (see
// args): since SQLite 3.54 sqlite3_clear_bindings expires a statement whose
// plan depends on a parameter's value (a "col = ?" term of a join does), and
// every run of the check's read would then be parsed and planned again:
// measured, a consuming CheckPIN took 80-110 µs instead of 20.
func (c *rawConn) reset(s *rawStmt) {
	sqlite3.Xsqlite3_reset(c.tls, s.p)
}

// bind binds args to s's parameters, converting them as database/sql's
// default converter does (see argValue).
func (c *rawConn) bind(s *rawStmt, args []any) error {
	// The text and blob arguments are copied into one C buffer, sized
	// first so that growing it cannot move what is already bound.
	values := c.values[:0]
	defer func() { clear(values); c.values = values[:0] }() // keep no argument alive
	size := 0
	for i, a := range args {
		v, err := argValue(a)
		if err != nil {
			return fmt.Errorf("sqlite: argument %d: %w", i+1, err)
		}
		values = append(values, v)
		n := 0
		switch v := v.(type) {
		case string:
			n = len(v)
		case []byte:
			n = len(v)
		}
		if n > math.MaxInt32 { // SQLite takes an int length
			return fmt.Errorf("sqlite: argument %d: %d bytes is too long", i+1, n)
		}
		size += n
	}
	if err := c.growArgs(size); err != nil {
		return err
	}
	off := 0
	for i, a := range values {
		idx := int32(i + 1)
		var rc int32
		switch v := a.(type) {
		case nil:
			rc = sqlite3.Xsqlite3_bind_null(c.tls, s.p, idx)
		case string:
			p := c.args + uintptr(off)
			copy(unsafe.Slice((*byte)(cPointer(p)), len(v)), v)
			off += len(v)
			rc = sqlite3.Xsqlite3_bind_text(c.tls, s.p, idx, p, int32(len(v)), 0)
		case []byte:
			// A blob of zero bytes still needs a non-NULL pointer, which
			// the buffer (never empty) gives it.
			p := c.args + uintptr(off)
			copy(unsafe.Slice((*byte)(cPointer(p)), len(v)), v)
			off += len(v)
			rc = sqlite3.Xsqlite3_bind_blob(c.tls, s.p, idx, p, int32(len(v)), 0)
		case int64:
			rc = sqlite3.Xsqlite3_bind_int64(c.tls, s.p, idx, v)
		case float64:
			rc = sqlite3.Xsqlite3_bind_double(c.tls, s.p, idx, v)
		default: // argValue returns none; never step a stale binding
			return fmt.Errorf("sqlite: argument %d: unexpected %T", i+1, v)
		}
		if rc != sqlite3.SQLITE_OK {
			return c.error(rc)
		}
	}
	return nil
}

// argValue turns an argument into nil, string, non-nil []byte, int64 or
// float64, as database/sql's default converter would: a driver.Valuer
// gives its Value, a nil []byte or pointer is NULL, a pointer is followed,
// a bool is 1 or 0, and named types convert by their kind. Anything else
// (a struct, a time.Time, an unsigned value past int64) is an error, never
// a guess.
func argValue(a any) (any, error) {
	switch v := a.(type) { // the common types, without reflection
	case nil, string, int64, float64:
		return a, nil
	case []byte:
		if v == nil {
			return nil, nil
		}
		return v, nil
	case int:
		return int64(v), nil
	case bool:
		if v {
			return int64(1), nil
		}
		return int64(0), nil
	case driver.Valuer:
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return nil, nil // database/sql too reads a nil pointer as NULL
		}
		dv, err := v.Value()
		if err != nil {
			return nil, err
		}
		if !driver.IsValue(dv) {
			return nil, fmt.Errorf("Value returned %T", dv)
		}
		if _, again := dv.(driver.Valuer); again {
			return nil, fmt.Errorf("Value returned a driver.Valuer, %T", dv)
		}
		return argValue(dv)
	}
	v := reflect.ValueOf(a)
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return argValue(v.Elem().Interface())
	case reflect.String:
		return v.String(), nil
	case reflect.Bool:
		return argValue(v.Bool())
	case reflect.Float32, reflect.Float64:
		return v.Float(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if v.Uint() > math.MaxInt64 {
			return nil, fmt.Errorf("uint64 value %d is past int64", v.Uint())
		}
		return int64(v.Uint()), nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return argValue(v.Bytes())
		}
	}
	return nil, fmt.Errorf("unsupported type %T", a)
}

// growArgs makes the argument buffer hold at least n bytes (and at least
// one, so that an empty text or blob gets a non-NULL pointer).
func (c *rawConn) growArgs(n int) error {
	if n <= c.argsCap && c.args != 0 {
		return nil
	}
	n = max(n, 256, 2*c.argsCap)
	p, err := c.malloc(n)
	if err != nil {
		return err
	}
	if c.args != 0 {
		c.oldArgs = append(c.oldArgs, c.args)
	}
	c.args, c.argsCap = p, n
	return nil
}

// inTransaction reports whether a transaction is open: SQLite may roll back
// a whole transaction on its own when a statement fails (a full disk, an
// I/O error, no memory), after which statements would each commit alone.
func (c *rawConn) inTransaction() bool {
	return sqlite3.Xsqlite3_get_autocommit(c.tls, c.db) == 0
}

// scanColumn copies column i of s's current row into dest. It converts
// what the stores' columns hold, as database/sql would; a few conversions
// database/sql also makes (TEXT into a float or a bool, REAL into an
// integer, destinations of named types) are errors here, none of which the
// write paths ask for.
func (c *rawConn) scanColumn(s *rawStmt, i int, dest any) error {
	col := int32(i)
	typ := sqlite3.Xsqlite3_column_type(c.tls, s.p, col)
	switch d := dest.(type) {
	case *string:
		if typ == sqlite3.SQLITE_NULL {
			return errors.New("converting NULL to string is unsupported")
		}
		*d = string(c.columnBytes(s, col, typ))
	case *[]byte:
		if typ == sqlite3.SQLITE_NULL {
			*d = nil
			return nil
		}
		b := c.columnBytes(s, col, typ)
		*d = append(make([]byte, 0, len(b)), b...)
	case *int64:
		n, err := c.columnInt(s, col, typ, 64)
		*d = n
		return err
	case *int:
		n, err := c.columnInt(s, col, typ, strconv.IntSize)
		*d = int(n)
		return err
	case *int32:
		n, err := c.columnInt(s, col, typ, 32)
		*d = int32(n)
		return err
	case *bool:
		n, err := c.columnInt(s, col, typ, 64)
		if err != nil {
			return err
		}
		if n != 0 && n != 1 {
			return fmt.Errorf("converting %d to bool", n)
		}
		*d = n == 1
	case *float64:
		if typ != sqlite3.SQLITE_INTEGER && typ != sqlite3.SQLITE_FLOAT {
			return fmt.Errorf("converting %s to float64 is unsupported", typeName(typ))
		}
		*d = sqlite3.Xsqlite3_column_double(c.tls, s.p, col)
	case *any:
		*d = c.columnValue(s, col, typ)
	case sql.Scanner:
		return d.Scan(c.columnValue(s, col, typ))
	default:
		return fmt.Errorf("unsupported Scan destination %T", dest)
	}
	return nil
}

// columnValue is column col as the driver value database/sql would hand a
// Scanner: int64, float64, string (TEXT), []byte (BLOB) or nil.
func (c *rawConn) columnValue(s *rawStmt, col int32, typ int32) any {
	switch typ {
	case sqlite3.SQLITE_INTEGER:
		return int64(sqlite3.Xsqlite3_column_int64(c.tls, s.p, col))
	case sqlite3.SQLITE_FLOAT:
		return sqlite3.Xsqlite3_column_double(c.tls, s.p, col)
	case sqlite3.SQLITE_TEXT:
		return string(c.columnBytes(s, col, typ))
	case sqlite3.SQLITE_BLOB:
		return append([]byte{}, c.columnBytes(s, col, typ)...)
	}
	return nil
}

// columnInt reads an INTEGER column (or TEXT holding a base-10 integer, as
// database/sql converts it) that must fit in bits.
func (c *rawConn) columnInt(s *rawStmt, col int32, typ int32, bits int) (int64, error) {
	var n int64
	switch typ {
	case sqlite3.SQLITE_INTEGER:
		n = int64(sqlite3.Xsqlite3_column_int64(c.tls, s.p, col))
	case sqlite3.SQLITE_TEXT:
		v, err := strconv.ParseInt(string(c.columnBytes(s, col, typ)), 10, bits)
		if err != nil {
			return 0, err
		}
		n = v
	default:
		return 0, fmt.Errorf("converting %s to an integer is unsupported", typeName(typ))
	}
	if bits < 64 && (n < -1<<(bits-1) || n > 1<<(bits-1)-1) {
		return 0, fmt.Errorf("value %d out of range for a %d-bit integer", n, bits)
	}
	return n, nil
}

// columnBytes views column col's bytes (its text for INTEGER and FLOAT, as
// SQLite renders them) in SQLite's memory: valid until the statement steps
// or resets, so callers copy them.
func (c *rawConn) columnBytes(s *rawStmt, col int32, typ int32) []byte {
	var p uintptr
	if typ == sqlite3.SQLITE_BLOB {
		p = sqlite3.Xsqlite3_column_blob(c.tls, s.p, col)
	} else {
		p = sqlite3.Xsqlite3_column_text(c.tls, s.p, col)
	}
	n := int(sqlite3.Xsqlite3_column_bytes(c.tls, s.p, col))
	if p == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(cPointer(p)), n)
}

func typeName(typ int32) string {
	switch typ {
	case sqlite3.SQLITE_INTEGER:
		return "INTEGER"
	case sqlite3.SQLITE_FLOAT:
		return "REAL"
	case sqlite3.SQLITE_TEXT:
		return "TEXT"
	case sqlite3.SQLITE_BLOB:
		return "BLOB"
	}
	return "NULL"
}

// error is the connection's error for result code rc, with SQLite's message.
func (c *rawConn) error(rc int32) error {
	msg := libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc))
	if c.db != 0 {
		if ext := sqlite3.Xsqlite3_extended_errcode(c.tls, c.db); ext&0xff == rc&0xff {
			if m := libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db)); m != msg {
				msg += ": " + m
			}
		}
	}
	return &sqliteError{code: int(rc), msg: fmt.Sprintf("%s (%d)", msg, rc)}
}

func (c *rawConn) malloc(n int) (uintptr, error) {
	p := libc.Xmalloc(c.tls, types.Size_t(n))
	if p == 0 {
		return 0, fmt.Errorf("sqlite: cannot allocate %d bytes", n)
	}
	return p, nil
}

func (c *rawConn) free(p *uintptr) {
	if *p != 0 {
		libc.Xfree(c.tls, *p)
		*p = 0
	}
}

// cPointer turns an address in the C heap of the transpiled library into a
// pointer. That memory is mapped outside Go's heap (modernc.org/memory), so
// the collector neither moves nor frees it; vet's unsafeptr check cannot
// know that, hence the conversion through memory rather than a cast.
func cPointer(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }
