package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
)

var _ verity.Copier = (*DB)(nil)

// Export streams every record in dependency order from one snapshot: a
// read-only REPEATABLE READ transaction, so the copy is consistent while
// the installation keeps serving. Rows are read as fn consumes them, never
// all at once. Export is not bounded by Options.StatementTimeout.
func (db *DB) Export(ctx context.Context, fn func(verity.Record) error) error {
	const op = "postgres.Export"
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return translate(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	steps := []struct {
		query string
		scan  func(pgx.Row) (verity.Record, error)
	}{
		{`SELECT id, username, secret_hash, created_at FROM accounts ORDER BY created_at, id`, func(r pgx.Row) (verity.Record, error) {
			a := &verity.Account{}
			err := r.Scan(&a.ID, &a.Username, &a.SecretHash, &a.CreatedAt)
			a.CreatedAt = a.CreatedAt.UTC()
			return verity.Record{Account: a}, err
		}},
		{`SELECT id, account_id, name, fqdn, settings, created_at FROM services ORDER BY created_at, id`, func(r pgx.Row) (verity.Record, error) {
			s := &verity.Service{Settings: verity.DefaultSettings()}
			var settings []byte
			if err := r.Scan(&s.ID, &s.AccountID, &s.Name, &s.FQDN, &settings, &s.CreatedAt); err != nil {
				return verity.Record{}, err
			}
			s.CreatedAt = s.CreatedAt.UTC()
			return verity.Record{Service: s}, json.Unmarshal(settings, &s.Settings)
		}},
		{`SELECT ` + userColumns + ` FROM users ORDER BY seq`, func(r pgx.Row) (verity.Record, error) {
			u, err := scanUser(r)
			return verity.Record{User: u}, err
		}},
		{`SELECT ` + factorColumns + ` FROM factors ORDER BY id`, func(r pgx.Row) (verity.Record, error) {
			f, err := scanFactor(r)
			return verity.Record{Factor: f}, err
		}},
		{`SELECT user_id, hash, used_at FROM recovery_codes ORDER BY user_id, hash`, func(r pgx.Row) (verity.Record, error) {
			c := &verity.RecoveryCode{}
			var used *time.Time
			err := r.Scan(&c.UserID, &c.Hash, &used)
			c.UsedAt = fromNull(used)
			return verity.Record{RecoveryCode: c}, err
		}},
	}
	for _, step := range steps {
		if err := exportRows(ctx, tx, step.query, step.scan, fn); err != nil {
			return err
		}
	}
	return translate(op, tx.Commit(ctx))
}

func exportRows(ctx context.Context, tx pgx.Tx, query string, scan func(pgx.Row) (verity.Record, error), fn func(verity.Record) error) error {
	const op = "postgres.Export"
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return translate(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return translate(op, rows.Err())
}

// Import inserts one record, leaving an existing row with the same key alone.
func (db *DB) Import(ctx context.Context, r verity.Record) (bool, error) {
	const op = "postgres.Import"
	var (
		query string
		args  []any
		text  []string
	)
	switch {
	case r.Account != nil:
		a := r.Account
		query = `INSERT INTO accounts (id, username, secret_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`
		args = []any{a.ID, a.Username, a.SecretHash, ts(a.CreatedAt)}
		text = []string{a.ID, a.Username}
	case r.Service != nil:
		s := r.Service
		settings, err := json.Marshal(s.Settings)
		if err != nil {
			return false, fmt.Errorf("%s: %w", op, err)
		}
		query = `INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`
		args = []any{s.ID, s.AccountID, s.Name, s.FQDN, string(settings), ts(s.CreatedAt)}
		text = []string{s.ID, s.AccountID, s.Name, s.FQDN}
	case r.User != nil:
		u := r.User
		query = `INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at, failure_count, failure_window_start, last_method)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`
		args = []any{u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, ts(u.CreatedAt),
			u.FailureCount, nullTime(u.FailureWindowStart), u.LastMethod}
		text = []string{u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, u.LastMethod}
	case r.Factor != nil:
		f := r.Factor
		query = `INSERT INTO factors (` + factorColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`
		args = []any{f.ID, f.UserID, f.Status, f.KeyID, f.Secret, f.Algorithm, f.Digits, f.Period, f.LastStep,
			ts(f.CreatedAt), nullTime(f.ActivatedAt)}
		text = []string{f.ID, f.UserID, f.Status, f.KeyID, f.Algorithm}
	case r.RecoveryCode != nil:
		c := r.RecoveryCode
		query = `INSERT INTO recovery_codes (user_id, hash, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
		args = []any{c.UserID, c.Hash, nullTime(c.UsedAt)}
		text = []string{c.UserID}
	default:
		return false, fmt.Errorf("%s: empty record", op)
	}
	if err := checkText(op, text...); err != nil {
		return false, err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, query, args...)
	if err != nil {
		return false, translate(op, err)
	}
	return tag.RowsAffected() == 1, nil
}
