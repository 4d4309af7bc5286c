// Package sqlite is the embedded verity.Store: one file, WAL, no server.
//
// It keeps one writer connection (SQLite allows one writer at a time, and a
// single connection turns lock contention into a queue in Go) and a pool of
// read-only connections. Write transactions begin IMMEDIATE so that a
// read-then-write inside one never fails halfway with SQLITE_BUSY.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/internal/schema"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is a verity.Store on one SQLite file.
type DB struct {
	path   string
	writer *sql.DB     // one connection, used by q and by migrations
	q      *writeQueue // every write goes through it (group commit)
	reader *sql.DB

	readStmts *stmtCache
	log       *slog.Logger

	checkpointFailing bool // the last checkpoint failed; the checkpointer goroutine's own

	// file, with SyncNormal only (nil otherwise), is the database file
	// opened once more, for the checkpointer to sync what its checkpoints
	// copy beside the writer (see checkpoint). It is closed after all of the
	// store's connections: closing any descriptor of a file drops the POSIX
	// locks this process holds on it, SQLite's included.
	file *os.File
	// walRestartFrames is, with SyncNormal, how many frames the WAL holds
	// before the checkpointer stops the writer to copy it back whole (see
	// checkpoint).
	walRestartFrames int64
	// lastCopied is how many of the WAL's frames the last checkpoint left
	// copied; the checkpointer goroutine's own.
	lastCopied int64
	// writerCheckpoints and fileSyncs count the checkpointer's two costly
	// steps, for tests.
	writerCheckpoints, fileSyncs atomic.Int64

	stopCheckpoints, checkpointsDone chan struct{}
	stopCheckpointsOnce              sync.Once
	closeOnce                        sync.Once
	closeErr                         error
}

var _ verity.Store = (*DB)(nil)

// Sync says what an acknowledged write survives.
type Sync string

const (
	// SyncFull (the default) syncs the WAL to the disk (fdatasync, see
	// OpenWith) before every commit returns: an acknowledged write survives
	// a crash of the process, of the operating system and a power loss.
	SyncFull Sync = "full"
	// SyncNormal writes the WAL before a commit returns and syncs it only at
	// checkpoints: an acknowledged write survives a crash (or SIGKILL) of the
	// process, because the operating system already holds it, but the last
	// commits before an operating-system crash or a power loss can be lost —
	// a used PIN could then verify once more, a counted try be forgotten.
	// Opt-in (serve --sqlite-sync normal) for faster, lower-latency commits.
	SyncNormal Sync = "normal"
)

// Options tune how the file is opened; the zero value is the safe default.
type Options struct {
	Sync Sync // "" means SyncFull
	// Log receives what background work has to report: a checkpoint that
	// fails (the write-ahead log then grows until one succeeds). nil
	// discards it.
	Log *slog.Logger

	// ReadOnly opens the file only to read it, as a copy's source: with
	// SQLite's mode=ro and query_only, no writer connection, no
	// checkpointer and no switch to WAL mode, so a file this process
	// cannot write (a backup on read-only storage, another user's file)
	// opens, and nothing is written to it. Every write fails. Sync is
	// ignored. A database in WAL mode needs its -shm beside it, which
	// SQLite creates if missing: where it is missing and cannot be created
	// (a folder this process cannot write), opening fails and says so.
	ReadOnly bool

	walRestartFrames int64 // tests: 0 means the constant walRestartFrames
}

// Open opens (creating if missing) the database file at path with the
// default, fully durable options. Call Migrate before use.
func Open(path string) (*DB, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options. Opening a store also switches this
// process's SQLite library to commit with fdatasync (see below): the switch
// is the library's, process-wide, and Verity wants it for every store.
func OpenWith(path string, opts Options) (*DB, error) {
	if opts.ReadOnly {
		return openReadOnly(path, opts)
	}
	var synchronous string
	switch opts.Sync {
	case "", SyncFull:
		synchronous = "FULL"
	case SyncNormal:
		synchronous = "NORMAL"
	default:
		return nil, fmt.Errorf("sqlite: sync must be %q or %q, not %q", SyncFull, SyncNormal, opts.Sync)
	}
	// secure_delete: freed pages and the WAL must not keep old PIN hashes.
	// synchronous: see Sync. In WAL mode both settings keep the database
	// consistent after any crash; they differ in what is durable.
	// wal_autocheckpoint=0: checkpoints run beside the writer (see checkpointer),
	// not inside whichever commit crosses the threshold.
	pragmas := url.Values{}
	for _, p := range []string{
		"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)",
		"secure_delete(1)", "synchronous(" + synchronous + ")", "wal_autocheckpoint(0)",
		"journal_size_limit(67108864)",
	} {
		pragmas.Add("_pragma", p)
	}
	// Commits sync with fdatasync(2), as SQLite's own Linux builds do, not
	// fsync(2), the transpiled library's default: just as durable (the data
	// and the file size reach the disk), but ext4 no longer pushes the WAL's
	// new mtime through its journal on every commit. The switch is
	// process-wide; where it does not exist (macOS, Windows) fsync stays.
	if _, err := sqlite.Fdatasync(true); err != nil && !errors.Is(err, sqlite.ErrFdatasyncUnavailable) {
		return nil, fmt.Errorf("sqlite: fdatasync: %w", err)
	}
	uri := fileURI(path)
	// The writer keeps a larger page cache than SQLite's 2 MiB, for the
	// users and PINs the writes touch, but not much larger: a B-tree split
	// whose new pages come out of order swaps two of them through the
	// pending-byte page's number (262,145), far past the end of the file,
	// and the commit then scans every slot of the cache's hash table
	// (pcache1TruncateUnsafe), which grows with the cache. Counted at a
	// million users' starts: nearly every commit, some 200 µs each. Measured
	// with the benchmark at a million users, alternating with 48 MiB: 16 MiB
	// did 10-13 % more checks and 8-11 % more starts, with peak RSS 105-110
	// MB against 166-171. 8 MiB did 8-10 % more starts, checks and totp
	// checks than 16 in single-scenario alternations, but a full run's totp
	// row fell to 15,130/s against 19,896 for 16 MiB: not adopted.
	//
	// temp_store=MEMORY keeps the writer's statement journal in memory. A
	// write that runs in a savepoint (a start that prunes old sends, a
	// counted try) journals the pages it changes, so that it can be undone
	// alone; past 64 KiB in one transaction SQLite moved that journal into
	// a temporary file and wrote every later page to it with pwrite(2),
	// 14 % of the writer's CPU in BenchmarkStartPIN. In memory it holds one
	// write's pages at a time (it is emptied when the savepoint is
	// released), and it serves no crash recovery: the WAL does. Nor do
	// pages holding PIN hashes reach a temporary file on disk any more.
	// BenchmarkStartPIN, alternated: 33.5, 33.7, 34.8 -> 31.1, 30.8, 31.8 µs.
	writerPragmas := append(slices.Clone(pragmas["_pragma"]), "cache_size(-16384)", "temp_store(MEMORY)")
	// The write queue's own connection (see rawConn).
	conn, err := openRawConn(uri, writerPragmas)
	if err != nil {
		return nil, openError(path, err)
	}
	// A database this process cannot write opens without complaint (SQLite
	// falls back to reading it), migrates if nothing is pending, and a
	// server on it then answered 500 to every write. It is refused here,
	// once, with the reason.
	if err := conn.checkWritable(); err != nil {
		conn.close()
		return nil, openError(path, err)
	}
	writer, err := sql.Open("sqlite", uri+"?"+url.Values{"_pragma": writerPragmas}.Encode()+"&_txlock=immediate")
	if err != nil {
		conn.close()
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	// This pool serves migrations, which SQLite's own lock keeps apart
	// from the queue, and the checkpointer's copy beside the writer.
	writer.SetMaxOpenConns(2)
	writer.SetConnMaxIdleTime(0)

	pragmas.Add("_pragma", "query_only(1)")
	reader, err := sql.Open("sqlite", uri+"?"+pragmas.Encode())
	if err != nil {
		writer.Close()
		conn.close()
		return nil, fmt.Errorf("open sqlite reader: %w", err)
	}
	reader.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	reader.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))

	var file *os.File
	if synchronous == "NORMAL" {
		if file, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			reader.Close()
			writer.Close()
			conn.close()
			return nil, fmt.Errorf("open %s for the checkpointer's syncs: %w", path, err)
		}
	}

	q := newWriteQueue(conn)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := &DB{path: path, writer: writer, reader: reader, q: q, readStmts: newStmtCache(reader), log: log,
		file: file, walRestartFrames: cmp.Or(opts.walRestartFrames, walRestartFrames),
		stopCheckpoints: make(chan struct{}), checkpointsDone: make(chan struct{})}
	go db.checkpointer(checkpointInterval)
	return db, nil
}

// fileURI returns a file: URI naming path, where ?, # and % mean
// something.
func fileURI(path string) string {
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

// errReadOnly answers the writes to a store opened with Options.ReadOnly.
var errReadOnly = errors.New("sqlite: database opened read-only")

// openReadOnly opens path as Options.ReadOnly says: one pool of read-only
// connections, and a write queue that refuses every write.
func openReadOnly(path string, opts Options) (*DB, error) {
	// mode=ro refuses a file that does not exist rather than create it.
	pragmas := url.Values{"mode": {"ro"}}
	for _, p := range []string{"busy_timeout(10000)", "foreign_keys(1)", "query_only(1)"} {
		pragmas.Add("_pragma", p)
	}
	reader, err := sql.Open("sqlite", fileURI(path)+"?"+pragmas.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite reader: %w", err)
	}
	reader.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	reader.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	// Opening is lazy; a first read opens the file, and its -shm in WAL mode.
	var n int
	if err := reader.QueryRow(`SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		reader.Close()
		return nil, readOnlyOpenError(path, err)
	}
	log := cmp.Or(opts.Log, slog.New(slog.DiscardHandler))
	// No checkpointer: checkpointsDone is closed, as if it had stopped.
	done := make(chan struct{})
	close(done)
	return &DB{path: path, reader: reader, q: newRefusingQueue(errReadOnly), readStmts: newStmtCache(reader), log: log,
		stopCheckpoints: make(chan struct{}), checkpointsDone: done}, nil
}

// readOnlyOpenError explains an error opening the database at path read-only.
func readOnlyOpenError(path string, err error) error {
	var se interface{ Code() int }
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_READONLY_DIRECTORY || se.Code() == sqlite3.SQLITE_READONLY_CANTINIT) {
		base := filepath.Base(path)
		// immutable=1 would read it without the -shm, but would also ignore
		// a -wal's commits and any write made while it reads: not safe.
		return fmt.Errorf("sqlite: database %s cannot be read here: in WAL mode SQLite needs %s-shm beside it, "+
			"and this process can neither use one nor create it in %s; copy %s to a folder this process can write, "+
			"and read the copy (%w)", path, base, filepath.Dir(path), path, err)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// openError explains an error opening the database at path: one that
// SQLite reports as read-only says so, and what cannot be written.
func openError(path string, err error) error {
	var se interface{ Code() int }
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_READONLY {
		return fmt.Errorf("open %s: %w", path, err)
	}
	base := filepath.Base(path)
	if se.Code() == sqlite3.SQLITE_READONLY_DIRECTORY {
		return fmt.Errorf("sqlite: database %s is read-only: this process cannot create %s-wal and %s-shm in its folder %s (%w)",
			path, base, base, filepath.Dir(path), err)
	}
	return fmt.Errorf("sqlite: database %s is read-only: this process cannot write the file, or %s-wal and %s-shm beside it (%w)",
		path, base, base, err)
}

// checkpointInterval is how often the WAL is copied back into the database.
// A checkpoint copies every page changed since the one before, and with a
// million users those are scattered over the file: at 250 ms each took up
// to 11 ms and the requests of its moment waited up to 25 ms, while the
// writer's commits did not slow down. Measured with the benchmark at a
// million users (check p99, start p99, starts/s): 250 ms 17–21, 30–35 ms,
// 12–13.5k; 100 ms 12, 22 ms, 10.8k; 50 ms 9, 16 ms, 9.3k. At 1000 users,
// where the same hot pages are copied each time, it makes no difference
// measurable here.
const checkpointInterval = 100 * time.Millisecond

// checkpointer copies the WAL into the database file. With SQLite's
// automatic checkpoints, the commit that crosses the WAL threshold runs the
// checkpoint itself and holds the single writer (measured: ~20 ms every
// ~0.4 s under load), so every queued write waits. Instead each tick runs
// checkpoint, which does nearly all of the work beside the writer.
func (db *DB) checkpointer(interval time.Duration) {
	defer close(db.checkpointsDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-db.stopCheckpoints:
			return
		case <-t.C:
			db.checkpoint()
		}
	}
}

// stopCheckpointer stops the checkpointer and waits until it has; later
// calls do nothing. Close calls it, and so do tests that need the write
// queue to hold only their own operations.
func (db *DB) stopCheckpointer() {
	db.stopCheckpointsOnce.Do(func() {
		close(db.stopCheckpoints)
		<-db.checkpointsDone
	})
}

// walRestartFrames: see DB.walRestartFrames. 8192 frames are 32 MiB of
// 4 KiB pages, about a third of a second of the check benchmark's commits.
const walRestartFrames = 8192

// catchUpPasses bounds the checkpoints beside the writer that run before
// the writer's own, with SyncNormal, each copying what was committed while
// the one before ran: fewer frames each time, so the writer copies and
// syncs only the last few milliseconds' worth.
const catchUpPasses = 2

// checkpoint runs one tick of the checkpointer:
//
//  1. A PASSIVE checkpoint on the writer pool (not the queue's connection)
//     syncs the WAL and copies it into the database beside the writer,
//     blocking neither it nor the readers. Under load it never copies the
//     WAL whole: commits keep adding frames while it copies.
//  2. A PASSIVE checkpoint on the writer's own connection, between two
//     batches, copies and syncs what is left. Every write waits for it, but
//     it bounds the WAL: only a WAL copied back whole can start over from
//     its beginning, at the next commit. Step 1 alone never gets there
//     under a steady load, and the WAL then grows without bound (1 GB in a
//     minute of the check benchmark), each commit paying for a longer file.
//
// With SyncFull that is all, at every tick. With SyncNormal, whose commits
// do not sync, step 2's syncs were what held the writer: SQLite syncs the
// WAL before a checkpoint copies it and the database once one copies it
// whole, so step 2 flushed every frame committed since step 1 and every
// page step 1 had copied (on this disk about 13 µs a page): 10-25 ms, ten
// times a second, 10-20 % of the writer's time in the check benchmark,
// during which every write waited. So with SyncNormal:
//
//   - after step 1 has copied anything, the database file is synced
//     through the store's own descriptor, beside the writer;
//   - step 2 runs only once the WAL holds walRestartFrames, a few times a
//     second under the benchmark's load, and before it steps 1 and the
//     sync run again, up to catchUpPasses times, each copying what was
//     committed during the one before; step 2 then takes a few ms.
//
// Measured with the benchmark (--sqlite-sync normal, alternated): the
// check's p90 at half of peak 4.3-5.3 ms against 10-11, its p99 12-13.5
// against 21-24, peaks within the noise. With SyncFull the same took 5-7 %
// off check, start and totp: there every commit waits for its own sync of
// the WAL, and a sync of the database beside it made those wait longer.
//
// A reader still reading from the WAL keeps step 2 from restarting it (one
// on an old snapshot also keeps it from being copied whole); a later tick
// does. A failure is retried at the next tick; a run of them is logged
// once, when it starts, and its end once.
func (db *DB) checkpoint() {
	frames, err := db.checkpointBeside()
	full := db.file == nil // SyncFull: step 2 at every tick, no syncs beside
	// A WAL that started over since holds fewer frames than the bound.
	for pass := 0; !full && err == nil && frames >= db.walRestartFrames && pass < catchUpPasses; pass++ {
		frames, err = db.checkpointBeside()
	}
	// After a failure beside the writer, the writer's own still bounds the WAL.
	if err != nil || full || frames >= db.walRestartFrames {
		db.writerCheckpoints.Add(1)
		err = errors.Join(err, db.q.runBetween(context.Background(), func(conn *rawConn) error {
			_, err := conn.exec("PRAGMA wal_checkpoint(PASSIVE)")
			return err
		}))
	}
	switch {
	case err != nil && !db.checkpointFailing:
		db.checkpointFailing = true
		db.log.Warn("sqlite checkpoint failed; the write-ahead log grows until one succeeds", "path", db.path+"-wal", "err", err)
	case err == nil && db.checkpointFailing:
		db.checkpointFailing = false
		db.log.Info("sqlite checkpoints succeed again", "path", db.path+"-wal")
	}
}

// checkpointBeside runs step 1 of checkpoint, and with SyncNormal the sync
// after it, and returns the frames in the WAL.
func (db *DB) checkpointBeside() (frames int64, err error) {
	var busy, copied int64 // copied: of the WAL's frames, how many are in the database
	if err := db.writer.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		return 0, err
	}
	// Whether SQLite synced the file (it does when the WAL is copied back
	// whole as it stands at the end) does not show here; a sync with little
	// to flush costs little, and one with nothing new copied is skipped.
	if db.file != nil && copied > 0 && copied != db.lastCopied {
		db.fileSyncs.Add(1)
		if err := syncData(db.file); err != nil {
			return 0, fmt.Errorf("sync %s: %w", db.path, err)
		}
	}
	db.lastCopied = copied
	return frames, nil
}

// Migrate applies pending schema migrations. It refuses a database whose
// schema is newer than this binary knows.
func (db *DB) Migrate(ctx context.Context) error {
	p, err := db.migrator()
	if err != nil {
		return err
	}
	if err := schema.CheckNotNewer(ctx, p); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// CheckSchema returns an error unless the schema is exactly the one this
// binary knows.
func (db *DB) CheckSchema(ctx context.Context) error {
	p, err := db.migrator()
	if err != nil {
		return err
	}
	return schema.CheckCurrent(ctx, p)
}

// HasSchema reports whether the database holds Verity's schema, of any
// version: the migrations' version table. It creates nothing, where
// CheckSchema and Migrate create that table in a database without it.
func (db *DB) HasSchema(ctx context.Context) (bool, error) {
	var n int
	err := db.reader.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("check schema: %w", err)
	}
	return n > 0, nil
}

func (db *DB) migrator() (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	conns := db.writer
	if conns == nil { // opened read-only: CheckSchema only reads
		conns = db.reader
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, conns, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.queryRow(ctx, "SELECT 1").Scan(&one)
}

// Close finishes queued writes and closes both pools; later calls return
// the first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		// The checkpointer first: it uses the write queue, and a checkpoint
		// refused by a closed queue would be logged as a failure.
		db.stopCheckpointer()
		qerr := db.q.close()
		db.readStmts.close()
		db.closeErr = errors.Join(qerr, db.reader.Close())
		if db.writer != nil { // nil: opened read-only
			db.closeErr = errors.Join(db.closeErr, db.writer.Close())
		}
		if db.file != nil {
			db.closeErr = errors.Join(db.closeErr, db.file.Close()) // last: see DB.file
		}
	})
	return db.closeErr
}

// micros and fromMicros store times as microseconds since the epoch: exact,
// sortable and cheap to compare in SQL.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// translate maps driver errors to verity errors by their SQLite result code.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return &verity.Error{Code: verity.ENOTFOUND, Op: op, Err: err}
	}
	var se interface{ Code() int } // modernc's *sqlite.Error, or a rawConn's
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &verity.Error{Code: verity.ECONFLICT, Op: op, Err: err}
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_TRIGGER:
			return &verity.Error{Code: verity.ECONFLICT, Op: op, Err: err}
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// notFound reports a missing row for op.
func notFound(op string) error {
	return &verity.Error{Code: verity.ENOTFOUND, Op: op}
}
