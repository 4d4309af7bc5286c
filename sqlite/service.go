package sqlite

import (
	"context"
	"database/sql"
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
	_, err = db.writer.ExecContext(ctx,
		`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		s.ID, s.AccountID, s.Name, s.FQDN, settings, micros(s.CreatedAt))
	return translate("sqlite.CreateService", err)
}

// Service returns the service with that id.
func (db *DB) Service(ctx context.Context, id string) (*verity.Service, error) {
	s := &verity.Service{}
	var settings []byte
	var created int64
	err := db.reader.QueryRowContext(ctx,
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
	res, err := db.writer.ExecContext(ctx, `UPDATE services SET settings = ? WHERE id = ?`, b, id)
	if err != nil {
		return translate("sqlite.UpdateServiceSettings", err)
	}
	return requireRow("sqlite.UpdateServiceSettings", res)
}

// DeleteService deletes the service; ECONFLICT while it has users (the
// foreign key refuses, so no user can slip in between a check and the delete).
func (db *DB) DeleteService(ctx context.Context, id string) error {
	res, err := db.writer.ExecContext(ctx, `DELETE FROM services WHERE id = ?`, id)
	if err != nil {
		return translate("sqlite.DeleteService", err)
	}
	return requireRow("sqlite.DeleteService", res)
}

func requireRow(op string, res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return translate(op, err)
	}
	if n == 0 {
		return notFound(op)
	}
	return nil
}
