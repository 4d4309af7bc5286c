package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/secretbox"
)

type accountCmd struct {
	Create accountCreateCmd `cmd:"" help:"Create an API account and print its credentials once, as JSON."`
	List   accountListCmd   `cmd:"" help:"List API accounts."`
	Delete accountDeleteCmd `cmd:"" help:"Delete an API account that has no services."`
}

type accountCreateCmd struct {
	dbFlags
	Name string `arg:"" help:"Account username."`
}

type accountListCmd struct {
	dbFlags
}

type accountDeleteCmd struct {
	dbFlags
	Name string `arg:"" help:"Account username."`
}

// withApp opens the database and the keys, creating any that is missing,
// runs fn and closes everything: account create may be the first command
// of an installation. An existing database is not migrated.
func (f *dbFlags) withApp(ctx context.Context, fn func(*app.App) error) error {
	keys, err := f.loadKeys()
	if err != nil {
		return err
	}
	seeds, err := f.loadSeedKeys()
	if err != nil {
		return err
	}
	store, err := f.openInstallation(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	a := app.New(store, nil, keys, nil)
	a.Seeds = seeds
	return fn(a)
}

// withInstallation opens the database, which must exist, and with seeds
// the seed keyring, which must exist too, runs fn and closes everything.
// Run in the wrong folder, these commands used to create an installation
// there (folder, keys, empty database) and report on it: no accounts, no
// seeds to re-encrypt. None of them uses the server secret, and none
// migrates the database.
func (f *dbFlags) withInstallation(ctx context.Context, seeds bool, fn func(*app.App) error) error {
	store, err := f.openExisting(ctx, false)
	if err != nil {
		return err
	}
	defer store.Close()
	a := app.New(store, nil, nil, nil)
	if seeds {
		if a.Seeds, err = f.existingSeedKeys(); err != nil {
			return err
		}
	}
	return fn(a)
}

func (c *accountCreateCmd) Run(ctx context.Context) error {
	return c.withApp(ctx, func(a *app.App) error {
		acct, password, err := a.CreateAccount(ctx, c.Name)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(map[string]string{"username": acct.Username, "password": password})
	})
}

func (c *accountListCmd) Run(ctx context.Context) error {
	return c.withInstallation(ctx, false, func(a *app.App) error {
		accounts, err := a.ListAccounts(ctx)
		if err != nil {
			return err
		}
		type row struct {
			Username string `json:"username"`
			ID       string `json:"id"`
			CTime    string `json:"ctime"`
		}
		out := make([]row, 0, len(accounts))
		for _, acct := range accounts {
			out = append(out, row{acct.Username, acct.ID, verity.FormatTime(acct.CreatedAt)})
		}
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"accounts": out})
	})
}

func (c *accountDeleteCmd) Run(ctx context.Context) error {
	return c.withInstallation(ctx, false, func(a *app.App) error {
		if err := a.DeleteAccount(ctx, c.Name); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "deleted account %q\n", c.Name)
		return nil
	})
}

type migrateCmd struct {
	dbFlags
}

// Run migrates the database, which must exist: a SQLite file that does
// not is refused (serve and account create make one, already migrated),
// while an empty PostgreSQL database gets its schema, the first step of a
// cluster (docs/scaling.md).
func (c *migrateCmd) Run(ctx context.Context) error {
	store, err := c.openExisting(ctx, true)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "database schema is up to date")
	return store.Close()
}

type keysCmd struct {
	Rotate    keysRotateCmd    `cmd:"" help:"Add a new primary seed key and re-encrypt every authenticator seed under it."`
	Reencrypt keysReencryptCmd `cmd:"" help:"Re-encrypt seeds still under an older key (idempotent; resumes an interrupted rotation)."`
}

type keysRotateCmd struct {
	dbFlags
	KeyringOnly bool `name:"keyring-only" help:"Only add the new primary key to the seed keyring file; open no database and re-encrypt nothing (the first step of a rotation across several nodes, docs/scaling.md)."`
}

func (c *keysRotateCmd) Run(ctx context.Context) error {
	if c.KeyringOnly {
		seeds, err := c.existingSeedKeys()
		if err != nil {
			return err
		}
		id, err := seeds.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "new primary seed key %q written; no seed was re-encrypted\n", id)
		return nil
	}
	return c.withInstallation(ctx, true, func(a *app.App) error {
		id, err := a.Seeds.(*secretbox.FileKeyring).Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "new primary seed key %q written; running servers pick it up within a second\n", id)
		return reencrypt(ctx, a)
	})
}

type keysReencryptCmd struct {
	dbFlags
}

func (c *keysReencryptCmd) Run(ctx context.Context) error {
	return c.withInstallation(ctx, true, func(a *app.App) error { return reencrypt(ctx, a) })
}

func reencrypt(ctx context.Context, a *app.App) error {
	n, err := a.RekeySeeds(ctx)
	fmt.Fprintf(os.Stderr, "re-encrypted %d authenticator seeds\n", n)
	return err
}
