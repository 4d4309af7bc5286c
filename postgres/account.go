package postgres

import (
	"context"

	"github.com/verityhq/verity"
)

// CreateAccount inserts a; ECONFLICT if the username is taken.
func (db *DB) CreateAccount(ctx context.Context, a *verity.Account) error {
	const op = "postgres.CreateAccount"
	if err := checkText(op, a.ID, a.Username); err != nil {
		return err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx,
		`INSERT INTO accounts (id, username, secret_hash, created_at) VALUES ($1, $2, $3, $4)`,
		a.ID, a.Username, a.SecretHash, ts(a.CreatedAt))
	return translate(op, err)
}

// AccountByUsername returns the account with that username.
func (db *DB) AccountByUsername(ctx context.Context, username string) (*verity.Account, error) {
	const op = "postgres.AccountByUsername"
	if !storable(username) {
		return nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	a := &verity.Account{}
	err := db.pool.QueryRow(ctx,
		`SELECT id, username, secret_hash, created_at FROM accounts WHERE username = $1`, username,
	).Scan(&a.ID, &a.Username, &a.SecretHash, &a.CreatedAt)
	if err != nil {
		return nil, translate(op, err)
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a, nil
}

// ListAccounts returns all accounts by username.
func (db *DB) ListAccounts(ctx context.Context) ([]*verity.Account, error) {
	const op = "postgres.ListAccounts"
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx,
		`SELECT id, username, secret_hash, created_at FROM accounts ORDER BY username`)
	if err != nil {
		return nil, translate(op, err)
	}
	defer rows.Close()
	var out []*verity.Account
	for rows.Next() {
		a := &verity.Account{}
		if err := rows.Scan(&a.ID, &a.Username, &a.SecretHash, &a.CreatedAt); err != nil {
			return nil, translate(op, err)
		}
		a.CreatedAt = a.CreatedAt.UTC()
		out = append(out, a)
	}
	return out, translate(op, rows.Err())
}

// DeleteAccount deletes the account; ECONFLICT while it has services (the
// foreign key refuses, so no service can slip in between a check and the
// delete).
func (db *DB) DeleteAccount(ctx context.Context, username string) error {
	const op = "postgres.DeleteAccount"
	if !storable(username) {
		return notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `DELETE FROM accounts WHERE username = $1`, username)
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(op)
	}
	return nil
}
