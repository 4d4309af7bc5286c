package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
)

const userColumns = `id, service_id, id_in_service, phone, phone_type, created_at, failure_count, failure_window_start, last_method`

// scanUser scans userColumns and then extra.
func scanUser(row pgx.Row, extra ...any) (*verity.User, error) {
	u := &verity.User{}
	var windowStart *time.Time
	dest := append([]any{&u.ID, &u.ServiceID, &u.IDInService, &u.Phone, &u.PhoneType,
		&u.CreatedAt, &u.FailureCount, &windowStart, &u.LastMethod}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	u.FailureWindowStart = fromNull(windowStart)
	return u, nil
}

// CreateUser inserts u; ECONFLICT if id_in_service is taken in the service
// or the service does not exist.
func (db *DB) CreateUser(ctx context.Context, u *verity.User) error {
	const op = "postgres.CreateUser"
	if err := checkText(op, u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType); err != nil {
		return err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx,
		`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, ts(u.CreatedAt))
	return translate(op, err)
}

// CreateUsers inserts all users in one statement, or none.
func (db *DB) CreateUsers(ctx context.Context, users []*verity.User) error {
	const op = "postgres.CreateUsers"
	n := len(users)
	ids, services, names, phones, types := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	created := make([]time.Time, n)
	for i, u := range users {
		if err := checkText(op, u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType); err != nil {
			return err
		}
		ids[i], services[i], names[i], phones[i], types[i], created[i] = u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, ts(u.CreatedAt)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	// WITH ORDINALITY keeps the callers' order, which is the listing order.
	_, err := db.pool.Exec(ctx, `
		INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at)
		SELECT id, service_id, id_in_service, phone, phone_type, created_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
		  WITH ORDINALITY AS u (id, service_id, id_in_service, phone, phone_type, created_at, n)
		ORDER BY n`,
		ids, services, names, phones, types, created)
	return translate(op, err)
}

// User returns the user id of service serviceID.
func (db *DB) User(ctx context.Context, serviceID, id string) (*verity.User, error) {
	const op = "postgres.User"
	if !storable(serviceID, id) {
		return nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users WHERE id = $1 AND service_id = $2`, id, serviceID))
	if err != nil {
		return nil, translate(op, err)
	}
	return u, nil
}

// ListUsers returns up to limit users in creation order and the total
// count, both from one statement and so from one snapshot. A limit of zero
// or less returns no users, only the count.
func (db *DB) ListUsers(ctx context.Context, serviceID string, limit int) ([]*verity.User, int, error) {
	const op = "postgres.ListUsers"
	if !storable(serviceID) {
		return []*verity.User{}, 0, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	if limit <= 0 {
		var total int
		err := db.pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE service_id = $1`, serviceID).Scan(&total)
		return []*verity.User{}, total, translate(op, err)
	}
	// The window count runs over every row of the service before LIMIT
	// applies; when no row comes back the service has no users.
	rows, err := db.pool.Query(ctx,
		`SELECT `+userColumns+`, count(*) OVER () FROM users WHERE service_id = $1 ORDER BY seq LIMIT $2`,
		serviceID, limit)
	if err != nil {
		return nil, 0, translate(op, err)
	}
	defer rows.Close()
	users := make([]*verity.User, 0, min(limit, 64))
	var total int
	for rows.Next() {
		u, err := scanUser(rows, &total)
		if err != nil {
			return nil, 0, translate(op, err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, translate(op, err)
	}
	return users, total, nil
}

// DeleteUser deletes the user and, by cascade, its PINs, factor, used steps
// and recovery codes.
func (db *DB) DeleteUser(ctx context.Context, serviceID, id string) error {
	const op = "postgres.DeleteUser"
	if !storable(serviceID, id) {
		return notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `DELETE FROM users WHERE id = $1 AND service_id = $2`, id, serviceID)
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(op)
	}
	return nil
}

// SetLastMethod records the method of the user's latest start.
func (db *DB) SetLastMethod(ctx context.Context, userID, method string) error {
	const op = "postgres.SetLastMethod"
	if !storable(userID) {
		return notFound(op)
	}
	if err := checkText(op, method); err != nil {
		return err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `UPDATE users SET last_method = $1 WHERE id = $2`, method, userID)
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound(op)
	}
	return nil
}
