package sqlite

import (
	"context"

	"github.com/verityhq/verity"
)

// CreateAccount inserts a; ECONFLICT if the username is taken.
func (db *DB) CreateAccount(ctx context.Context, a *verity.Account) error {
	return translate("sqlite.CreateAccount", db.exec(ctx,
		`INSERT INTO accounts (id, username, secret_hash, created_at) VALUES (?, ?, ?, ?)`,
		a.ID, a.Username, a.SecretHash, micros(a.CreatedAt)))
}

// AccountByUsername returns the account with that username.
func (db *DB) AccountByUsername(ctx context.Context, username string) (*verity.Account, error) {
	a := &verity.Account{}
	var created int64
	err := db.queryRow(ctx,
		`SELECT id, username, secret_hash, created_at FROM accounts WHERE username = ?`, username,
	).Scan(&a.ID, &a.Username, &a.SecretHash, &created)
	if err != nil {
		return nil, translate("sqlite.AccountByUsername", err)
	}
	a.CreatedAt = fromMicros(created)
	return a, nil
}

// ListAccounts returns all accounts by username.
func (db *DB) ListAccounts(ctx context.Context) ([]*verity.Account, error) {
	rows, err := db.reader.QueryContext(ctx,
		`SELECT id, username, secret_hash, created_at FROM accounts ORDER BY username`)
	if err != nil {
		return nil, translate("sqlite.ListAccounts", err)
	}
	defer rows.Close()
	var out []*verity.Account
	for rows.Next() {
		a := &verity.Account{}
		var created int64
		if err := rows.Scan(&a.ID, &a.Username, &a.SecretHash, &created); err != nil {
			return nil, translate("sqlite.ListAccounts", err)
		}
		a.CreatedAt = fromMicros(created)
		out = append(out, a)
	}
	return out, translate("sqlite.ListAccounts", rows.Err())
}

// DeleteAccount deletes the account; ECONFLICT while it has services.
func (db *DB) DeleteAccount(ctx context.Context, username string) error {
	return db.execOne(ctx, "sqlite.DeleteAccount", `DELETE FROM accounts WHERE username = ?`, username)
}
