package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/internal/storeopen"
)

type storeCmd struct {
	Copy storeCopyCmd `cmd:"" help:"Copy an installation (accounts, services, users, settings, authenticator apps) from one database to another, e.g. SQLite to PostgreSQL."`
}

type storeCopyCmd struct {
	From string `name:"from" required:"" help:"Source database: a SQLite file path, or a postgres:// URL or libpq keyword/value string. It must exist with this release's schema, and is not changed."`
	To   string `name:"to" required:"" help:"Target database: a SQLite file path, or a postgres:// URL or libpq keyword/value string (created if missing, and migrated first)."`
}

// copyCount is one line of the summary.
type copyCount struct {
	Copied         int `json:"copied"`
	AlreadyPresent int `json:"already_present"`
}

// Run copies every record, leaving rows the target already has alone, so a
// repeated or resumed copy is safe. In-flight PINs are not copied: they live
// minutes, and users just ask for a new one.
func (c *storeCopyCmd) Run(ctx context.Context) error {
	if c.From == c.To {
		return errors.New("--from and --to name the same database")
	}
	// The source is read as it stands: a typo must not create an empty
	// database to copy nothing from, and a migration would change the
	// schema under the server that may still be serving it.
	src, err := storeopen.OpenWith(ctx, c.From, storeopen.Options{Mode: storeopen.AsIs})
	if err != nil {
		return fmt.Errorf("open --from: %w", err)
	}
	defer src.Close()
	dst, err := openDatabase(ctx, c.To)
	if err != nil {
		return fmt.Errorf("open --to: %w", err)
	}
	defer dst.Close()
	from, ok1 := src.(verity.Copier)
	to, ok2 := dst.(verity.Copier)
	if !ok1 || !ok2 {
		return errors.New("this database kind cannot be copied")
	}
	summary := map[string]*copyCount{}
	for _, kind := range []string{"accounts", "services", "users", "factors", "recovery_codes"} {
		summary[kind] = &copyCount{}
	}
	err = from.Export(ctx, func(r verity.Record) error {
		inserted, err := to.Import(ctx, r)
		if err != nil {
			return fmt.Errorf("copy %s: %w", r.Kind(), err)
		}
		if inserted {
			summary[r.Kind()].Copied++
		} else {
			summary[r.Kind()].AlreadyPresent++
		}
		return nil
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(summary)
}
