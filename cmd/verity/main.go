// Command verity is the Verity server and its administration tool.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/internal/storeopen"
	"github.com/verityhq/verity/postgres"
	"github.com/verityhq/verity/secretbox"
	"github.com/verityhq/verity/sqlite"
)

// cli is the whole command line; every flag has a VERITY_… environment twin.
type cli struct {
	Version kong.VersionFlag `name:"version" help:"Print the version (module version, git revision, Go version) and exit."`

	Serve   serveCmd   `cmd:"" help:"Run the API server."`
	Account accountCmd `cmd:"" help:"Manage API accounts."`
	Migrate migrateCmd `cmd:"" help:"Apply database schema migrations."`
	Keys    keysCmd    `cmd:"" help:"Manage the keys that encrypt authenticator seeds."`
	Store   storeCmd   `cmd:"" help:"Move installations between databases."`
}

// dbFlags are shared by every command that opens the database.
type dbFlags struct {
	DataDir       string `name:"data-dir" default:"verity-data" env:"VERITY_DATA_DIR" help:"Folder for the default database and generated secret key (created if missing)."`
	DB            string `name:"db" env:"VERITY_DB" help:"SQLite file path (default: <data-dir>/verity.db). A postgres:// URL, or a libpq keyword/value string such as 'host=db.internal dbname=verity user=verity', selects PostgreSQL."`
	SecretKeyFile string `name:"secret-key-file" env:"VERITY_SECRET_KEY_FILE" help:"File with the hex server secret (default: <data-dir>/secret.key, generated on first start with mode 0600)."`
	SQLiteSync    string `name:"sqlite-sync" default:"full" enum:"full,normal" env:"VERITY_SQLITE_SYNC" help:"SQLite durability: full (default) syncs every commit to the disk, so an acknowledged write survives power loss; normal survives a crash of the Verity process but may lose the last commits on power loss or an OS crash, for faster commits. See docs/durability.md."`
	PGCheckBatch  int    `name:"pg-check-batch" default:"16" env:"VERITY_PG_CHECK_BATCH" help:"PostgreSQL: how many concurrent PIN checks one statement may decide together, and how many authenticator app checks' writes one statement may make (1: a statement each). A lone check never waits: checks queue for a shared statement only while a quarter of the pool's connections already run check statements (app writes: another quarter)."`
	SeedKeysFile  string `name:"seed-keys-file" env:"VERITY_SEED_KEYS_FILE" help:"JSON keyring that encrypts authenticator seeds (default: <data-dir>/seed-keys.json, generated on first start with mode 0600)."`
}

func main() {
	var c cli
	parser := kong.Must(&c,
		kong.Name("verity"),
		kong.Description("Verity: a self-hostable phone-number and two-factor verification server, compatible with Messente's Verigator API."),
		kong.Vars{"version": "verity " + version()},
	)
	secrets := newRedactor(os.Args[1:], os.Environ())
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		// One line and where to read more: the full usage (75 lines, on
		// stdout) buried the error that kong.UsageOnError printed after it.
		fmt.Fprintf(os.Stderr, "verity: %s (see `%s --help`)\n", secrets.redact(err.Error()), commandPath(err))
		os.Exit(exitCode(err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "verity: %s\n", describe(err, secrets))
		os.Exit(1)
	}
}

// commandPath names the command a parse error belongs to ("verity serve"),
// or "verity" when none was chosen.
func commandPath(err error) string {
	var perr *kong.ParseError
	if errors.As(err, &perr) && perr.Context != nil {
		if cmd := perr.Context.Selected(); cmd != nil {
			return cmd.FullPath()
		}
	}
	return "verity"
}

// exitCode is kong's status for err: 80 (a usage error) for a parse error.
func exitCode(err error) int {
	var coder kong.ExitCoder
	if errors.As(err, &coder) {
		return coder.ExitCode()
	}
	return 1
}

// describe renders an error for a terminal: the safe message of a
// verity.Error followed by its cause (an operator needs to see why the
// database is unavailable), or the whole chain of anything else; r keeps
// the secrets the process was given out of either.
func describe(err error, r *redactor) string {
	var e *verity.Error
	if code := verity.ErrorCode(err); code == verity.EINTERNAL || !errors.As(err, &e) {
		if r.withhold {
			return "internal error" + withheld
		}
		return r.redact(err.Error())
	}
	msg := verity.ErrorMessage(err)
	switch {
	case e.Err == nil:
		return msg
	case r.withhold:
		return msg + withheld
	}
	return r.redact(msg + ": " + e.Err.Error())
}

// openStore opens and migrates the configured database, creating it (and
// the data folder) if missing: serve starts an installation, and brings
// its schema up to date. log (nil: none) receives what the store's
// background work reports.
func (f *dbFlags) openStore(ctx context.Context, log *slog.Logger) (verity.Store, error) {
	return f.open(ctx, log, storeopen.Options{Mode: storeopen.Create})
}

// openInstallation opens the configured database as it is, creating it
// (and the data folder) if missing, with this binary's schema: account
// create may be the first command of an installation. A database that
// has a schema is not migrated (see openExisting).
func (f *dbFlags) openInstallation(ctx context.Context) (verity.Store, error) {
	return f.open(ctx, nil, storeopen.Options{Mode: storeopen.Create, Schema: storeopen.SchemaCreateIfMissing})
}

// openExisting opens the configured database, which must exist: the
// commands that work on an installation, run in the wrong folder, must
// not start a new, empty one there and report on that. Only with migrate
// does it bring the schema up to date; otherwise a schema other than this
// binary's is refused, since a newer binary's admin command must not
// change the schema under the older release's server still using it (a
// rolling upgrade's rollback path, docs/scaling.md). Only migrate gives a
// database without a schema this binary's (a new PostgreSQL database's
// first step); the others refuse it, since an existing database without
// Verity's tables is most likely the wrong one, and a typo must not fill it
// with Verity's tables.
func (f *dbFlags) openExisting(ctx context.Context, migrate bool) (verity.Store, error) {
	schema := storeopen.SchemaMustBeCurrent
	if migrate {
		schema = storeopen.SchemaMigrate
	}
	store, err := f.open(ctx, nil, storeopen.Options{Mode: storeopen.MustExist, Schema: schema})
	switch {
	case errors.Is(err, storeopen.ErrNoDatabase) && f.DB == "":
		return nil, fmt.Errorf("no Verity installation in %s (no %s): pass --data-dir or --db, "+
			"or run `verity serve` or `verity account create` once to create one",
			f.DataDir, filepath.Join(f.DataDir, "verity.db"))
	case errors.Is(err, storeopen.ErrNoDatabase):
		return nil, fmt.Errorf("%w: check --db, or run `verity serve` or `verity account create` with it once to create it", err)
	}
	return store, err
}

// open opens the configured database as opts say, adding the settings of
// the flags; only the Create mode makes the data folder.
func (f *dbFlags) open(ctx context.Context, log *slog.Logger, opts storeopen.Options) (verity.Store, error) {
	if f.PGCheckBatch < 1 {
		return nil, verity.Errorf(verity.EINVALID, "--pg-check-batch must be at least 1, not %d", f.PGCheckBatch)
	}
	dsn := f.DB
	if dsn == "" {
		if opts.Mode == storeopen.Create {
			if err := os.MkdirAll(f.DataDir, 0o700); err != nil {
				return nil, fmt.Errorf("create data folder: %w", err)
			}
		}
		dsn = filepath.Join(f.DataDir, "verity.db")
	}
	opts.SQLite = sqlite.Options{Sync: sqlite.Sync(f.SQLiteSync), Log: log}
	opts.Postgres = postgres.Options{CheckBatch: f.PGCheckBatch}
	return storeopen.OpenWith(ctx, dsn, opts)
}

// openDatabase opens and migrates a database named by a SQLite path, a
// postgres:// URL or a libpq keyword/value string.
func openDatabase(ctx context.Context, dsn string) (verity.Store, error) {
	return storeopen.Open(ctx, dsn)
}

// loadKeys reads the server secret; the default file is generated on first use.
func (f *dbFlags) loadKeys() (*app.Keys, error) {
	if f.SecretKeyFile != "" {
		return app.LoadKeyFile(f.SecretKeyFile, false)
	}
	return app.LoadKeyFile(filepath.Join(f.DataDir, "secret.key"), true)
}

// loadSeedKeys opens the authenticator-seed keyring; the default file is
// generated on first use.
func (f *dbFlags) loadSeedKeys() (*secretbox.FileKeyring, error) {
	if f.SeedKeysFile != "" {
		return secretbox.OpenFileKeyring(f.SeedKeysFile, false)
	}
	return secretbox.OpenFileKeyring(filepath.Join(f.DataDir, "seed-keys.json"), true)
}

// existingSeedKeys opens the authenticator-seed keyring, which must exist:
// a keyring generated now could open none of the seeds in the database.
func (f *dbFlags) existingSeedKeys() (*secretbox.FileKeyring, error) {
	path := cmp.Or(f.SeedKeysFile, filepath.Join(f.DataDir, "seed-keys.json"))
	keys, err := secretbox.OpenFileKeyring(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no seed keyring at %s: pass --seed-keys-file or --data-dir", path)
	}
	return keys, err
}

// newLogger returns the process logger: JSON for machines, text for people.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // kong has checked it against the enum
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
