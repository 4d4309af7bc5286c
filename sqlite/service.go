package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/verityhq/verity"
)

// CreateService inserts s; ECONFLICT if the account already has that name.
func (db *DB) CreateService(ctx context.Context, s *verity.Service) error {
	settings, err := json.Marshal(s.Settings)
	if err != nil {
		return fmt.Errorf("sqlite.CreateService: %w", err)
	}
	return translate("sqlite.CreateService", db.exec(ctx,
		`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.AccountID, s.Name, s.FQDN, settings, micros(s.CreatedAt)))
}

// Service returns the service with that id.
func (db *DB) Service(ctx context.Context, id string) (*verity.Service, error) {
	s := &verity.Service{}
	var settings []byte
	var created int64
	err := db.queryRow(ctx,
		`SELECT id, account_id, name, fqdn, settings, created_at FROM services WHERE id = ?`, id,
	).Scan(&s.ID, &s.AccountID, &s.Name, &s.FQDN, &settings, &created)
	if err != nil {
		return nil, translate("sqlite.Service", err)
	}
	s.CreatedAt = fromMicros(created)
	// Settings stored by an older version lack newer fields: they keep their defaults.
	s.Settings = verity.DefaultSettings()
	if err := json.Unmarshal(settings, &s.Settings); err != nil {
		return nil, fmt.Errorf("sqlite.Service: settings: %w", err)
	}
	return s, nil
}

// UpdateServiceSettings replaces the service's settings.
func (db *DB) UpdateServiceSettings(ctx context.Context, id string, settings verity.Settings) error {
	b, err := json.Marshal(settings)
	if err != nil {
		return fmt.Errorf("sqlite.UpdateServiceSettings: %w", err)
	}
	return db.execOne(ctx, "sqlite.UpdateServiceSettings", `UPDATE services SET settings = ? WHERE id = ?`, b, id)
}

// DeleteService deletes the service; ECONFLICT while it has users (the
// foreign key refuses, so no user can slip in between a check and the delete).
func (db *DB) DeleteService(ctx context.Context, id string) error {
	return db.execOne(ctx, "sqlite.DeleteService", `DELETE FROM services WHERE id = ?`, id)
}

// exec runs one write statement through the group-commit queue.
func (db *DB) exec(ctx context.Context, query string, args ...any) error {
	_, err := db.execCount(ctx, query, args...)
	return err
}

// execCount runs one write statement and returns how many rows it changed.
func (db *DB) execCount(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := db.q.writeStatement(ctx, func(tx *wtx) error {
		res, err := tx.Exec(query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// execOne runs one write statement that must change a row: ENOTFOUND if none.
func (db *DB) execOne(ctx context.Context, op, query string, args ...any) error {
	n, err := db.execCount(ctx, query, args...)
	if err != nil {
		return translate(op, err)
	}
	if n == 0 {
		return notFound(op)
	}
	return nil
}
