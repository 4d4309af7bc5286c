package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/verityhq/verity"
)

// CreateService inserts s; ECONFLICT if the account already has that name
// or does not exist.
func (db *DB) CreateService(ctx context.Context, s *verity.Service) error {
	const op = "postgres.CreateService"
	if err := checkText(op, s.ID, s.AccountID, s.Name, s.FQDN); err != nil {
		return err
	}
	settings, err := json.Marshal(s.Settings)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	// The settings travel as a string: every query mode sends that as JSON
	// text, while a []byte would go as bytea under the text-format modes.
	_, err = db.pool.Exec(ctx,
		`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		s.ID, s.AccountID, s.Name, s.FQDN, string(settings), ts(s.CreatedAt))
	return translate(op, err)
}

// Service returns the service with that id.
func (db *DB) Service(ctx context.Context, id string) (*verity.Service, error) {
	const op = "postgres.Service"
	if !storable(id) {
		return nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	s := &verity.Service{}
	var settings []byte
	err := db.pool.QueryRow(ctx,
		`SELECT id, account_id, name, fqdn, settings, created_at FROM services WHERE id = $1`, id,
	).Scan(&s.ID, &s.AccountID, &s.Name, &s.FQDN, &settings, &s.CreatedAt)
	if err != nil {
		return nil, translate(op, err)
	}
	s.CreatedAt = s.CreatedAt.UTC()
	// Settings stored by an older version lack newer fields: they keep their defaults.
	s.Settings = verity.DefaultSettings()
	if err := json.Unmarshal(settings, &s.Settings); err != nil {
		return nil, fmt.Errorf("%s: settings: %w", op, err)
	}
	return s, nil
}

// UpdateServiceSettings replaces the service's settings.
func (db *DB) UpdateServiceSettings(ctx context.Context, id string, settings verity.Settings) error {
	const op = "postgres.UpdateServiceSettings"
	if !storable(id) {
		return notFound(op)
	}
	b, err := json.Marshal(settings)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `UPDATE services SET settings = $1 WHERE id = $2`, string(b), id)
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(op)
	}
	return nil
}

// DeleteService deletes the service; ECONFLICT while it has users (the
// foreign key refuses, so no user can slip in between a check and the delete).
func (db *DB) DeleteService(ctx context.Context, id string) error {
	const op = "postgres.DeleteService"
	if !storable(id) {
		return notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `DELETE FROM services WHERE id = $1`, id)
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(op)
	}
	return nil
}
