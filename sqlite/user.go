package sqlite

import (
	"context"

	"github.com/verityhq/verity"
)

// userColumns are a user's columns in usersWithFailures: the failure
// budget is kept apart (see migrations 00003 and 00004), and a user without
// a row there has counted no failure lately.
const userColumns = `u.id, u.service_id, u.id_in_service, u.phone, u.phone_type, u.created_at, ` +
	`coalesce(f.failure_count, 0), coalesce(f.window_start, 0), u.last_method`

// failuresJoin joins the failure budget userColumns read onto "users u".
const failuresJoin = `LEFT JOIN user_failures f ON f.user_seq = u.seq`

// userSeqArg binds a user's seq, the key of user_failures, in the
// statements that test a budget. They take the seq where the caller has it
// (a check that read the user in the same transaction) and otherwise look
// it up by the user's id, as coalesce(?seq, (SELECT seq FROM users WHERE id
// = ?id)): 0, unknown, binds NULL. A user that does not exist has a NULL
// seq, which matches no row.
func userSeqArg(seq int64) any {
	if seq == 0 {
		return nil
	}
	return seq
}

// usersWithFailures is the FROM clause userColumns read when nothing else
// is joined.
const usersWithFailures = `users u ` + failuresJoin

type scanner interface{ Scan(dest ...any) error }

// scanUser scans userColumns and then extra.
func scanUser(row scanner, extra ...any) (*verity.User, error) {
	u := &verity.User{}
	var created, windowStart int64
	dest := append([]any{&u.ID, &u.ServiceID, &u.IDInService, &u.Phone, &u.PhoneType,
		&created, &u.FailureCount, &windowStart, &u.LastMethod}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	u.CreatedAt = fromMicros(created)
	u.FailureWindowStart = fromMicros(windowStart)
	return u, nil
}

// CreateUser inserts u; ECONFLICT if id_in_service is taken in the service.
func (db *DB) CreateUser(ctx context.Context, u *verity.User) error {
	return translate("sqlite.CreateUser", db.exec(ctx,
		`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, micros(u.CreatedAt)))
}

// CreateUsers inserts all users in one write, or none.
func (db *DB) CreateUsers(ctx context.Context, users []*verity.User) error {
	return translate("sqlite.CreateUsers", db.q.write(ctx, func(tx *wtx) error {
		for _, u := range users {
			if _, err := tx.Exec(`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				u.ID, u.ServiceID, u.IDInService, u.Phone, u.PhoneType, micros(u.CreatedAt)); err != nil {
				return err
			}
		}
		return nil
	}))
}

// User returns the user id of service serviceID.
func (db *DB) User(ctx context.Context, serviceID, id string) (*verity.User, error) {
	u, err := scanUser(db.queryRow(ctx,
		`SELECT `+userColumns+` FROM `+usersWithFailures+` WHERE u.id = ? AND u.service_id = ?`, id, serviceID))
	if err != nil {
		return nil, translate("sqlite.User", err)
	}
	return u, nil
}

// ListUsers returns up to limit users in creation order and the total count.
func (db *DB) ListUsers(ctx context.Context, serviceID string, limit int) ([]*verity.User, int, error) {
	limit = max(limit, 0)
	tx, err := db.reader.BeginTx(ctx, nil) // one snapshot for the page and the count
	if err != nil {
		return nil, 0, translate("sqlite.ListUsers", err)
	}
	defer tx.Rollback()
	var total int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE service_id = ?`, serviceID).Scan(&total); err != nil {
		return nil, 0, translate("sqlite.ListUsers", err)
	}
	rows, err := tx.QueryContext(ctx,
		`SELECT `+userColumns+` FROM `+usersWithFailures+` WHERE u.service_id = ? ORDER BY u.seq LIMIT ?`, serviceID, limit)
	if err != nil {
		return nil, 0, translate("sqlite.ListUsers", err)
	}
	defer rows.Close()
	users := make([]*verity.User, 0, min(limit, total))
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, translate("sqlite.ListUsers", err)
		}
		users = append(users, u)
	}
	return users, total, translate("sqlite.ListUsers", rows.Err())
}

// DeleteUser deletes the user and, by cascade, its PINs.
func (db *DB) DeleteUser(ctx context.Context, serviceID, id string) error {
	return db.execOne(ctx, "sqlite.DeleteUser", `DELETE FROM users WHERE id = ? AND service_id = ?`, id, serviceID)
}

// SetLastMethod records the method of the user's latest start.
func (db *DB) SetLastMethod(ctx context.Context, userID, method string) error {
	return db.execOne(ctx, "sqlite.SetLastMethod", `UPDATE users SET last_method = ? WHERE id = ?`, method, userID)
}
