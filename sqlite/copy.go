package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/verityhq/verity"
)

var _ verity.Copier = (*DB)(nil)

// Export streams every record in dependency order from one read snapshot.
func (db *DB) Export(ctx context.Context, fn func(verity.Record) error) error {
	tx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return translate("sqlite.Export", err)
	}
	defer tx.Rollback()
	steps := []struct {
		query string
		scan  func(scanner) (verity.Record, error)
	}{
		{`SELECT id, username, secret_hash, created_at FROM accounts ORDER BY created_at, id`, func(r scanner) (verity.Record, error) {
			a := &verity.Account{}
			var created int64
			err := r.Scan(&a.ID, &a.Username, &a.SecretHash, &created)
			a.CreatedAt = fromMicros(created)
			return verity.Record{Account: a}, err
		}},
		{`SELECT id, account_id, name, fqdn, settings, created_at FROM services ORDER BY created_at, id`, func(r scanner) (verity.Record, error) {
			s := &verity.Service{Settings: verity.DefaultSettings()}
			var settings []byte
			var created int64
			if err := r.Scan(&s.ID, &s.AccountID, &s.Name, &s.FQDN, &settings, &created); err != nil {
				return verity.Record{}, err
			}
			s.CreatedAt = fromMicros(created)
			return verity.Record{Service: s}, json.Unmarshal(settings, &s.Settings)
		}},
		{`SELECT ` + userColumns + ` FROM ` + usersWithFailures + ` ORDER BY u.seq`, func(r scanner) (verity.Record, error) {
			u, err := scanUser(r)
			return verity.Record{User: u}, err
		}},
		{`SELECT ` + factorColumns + ` FROM factors ORDER BY id`, func(r scanner) (verity.Record, error) {
			f, err := scanFactor(r)
			return verity.Record{Factor: f}, err
		}},
		{`SELECT user_id, hash, used_at FROM recovery_codes ORDER BY user_id, hash`, func(r scanner) (verity.Record, error) {
			c := &verity.RecoveryCode{}
			var used int64
			err := r.Scan(&c.UserID, &c.Hash, &used)
			c.UsedAt = fromMicros(used)
			return verity.Record{RecoveryCode: c}, err
		}},
	}
	for _, step := range steps {
		if err := exportRows(ctx, tx, step.query, step.scan, fn); err != nil {
			return err
		}
	}
	return nil
}

func exportRows(ctx context.Context, tx *sql.Tx, query string, scan func(scanner) (verity.Record, error), fn func(verity.Record) error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return translate("sqlite.Export", err)
	}
	defer rows.Close()
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return fmt.Errorf("sqlite.Export: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return translate("sqlite.Export", rows.Err())
}

// Import inserts one record, leaving an existing row with the same key alone.
func (db *DB) Import(ctx context.Context, r verity.Record) (bool, error) {
	var (
		query string
		args  []any
	)
	switch {
	case r.Account != nil:
		a := r.Account
		query = `INSERT INTO accounts (id, username, secret_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
		args = []any{a.ID, a.Username, a.SecretHash, micros(a.CreatedAt)}
	case r.Service != nil:
		s := r.Service
		settings, err := json.Marshal(s.Settings)
		if err != nil {
			return false, err
		}
		query = `INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
		args = []any{s.ID, s.AccountID, s.Name, s.FQDN, settings, micros(s.CreatedAt)}
	case r.User != nil:
		u := r.User
		return db.importUser(ctx, u)
	case r.Factor != nil:
		f := r.Factor
		query = `INSERT INTO factors (` + factorColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
		args = []any{f.ID, f.UserID, f.Status, f.KeyID, f.Secret, f.Algorithm, f.Digits, f.Period, f.LastStep, micros(f.CreatedAt), micros(f.ActivatedAt)}
	case r.RecoveryCode != nil:
		c := r.RecoveryCode
		query = `INSERT INTO recovery_codes (user_id, hash, used_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
		args = []any{c.UserID, c.Hash, micros(c.UsedAt)}
	default:
		return false, fmt.Errorf("sqlite.Import: empty record")
	}
	n, err := db.execCount(ctx, query, args...)
	return n == 1, translate("sqlite.Import", err)
}

// importUser inserts the user and, when it carries a failure budget, that
// budget's row, in one write: both or neither.
func (db *DB) importUser(ctx context.Context, u *verity.User) (bool, error) {
	inserted := false
	err := db.q.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at, last_method)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, micros(u.CreatedAt), u.LastMethod)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // an existing user keeps its own budget
		}
		inserted = true
		if u.FailureCount == 0 && u.FailureWindowStart.IsZero() {
			return nil
		}
		seq, err := res.LastInsertId()
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO user_failures (user_seq, failure_count, window_start) VALUES (?, ?, ?)`,
			seq, u.FailureCount, micros(u.FailureWindowStart))
		return err
	})
	return inserted, translate("sqlite.Import", err)
}
