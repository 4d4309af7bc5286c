package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
)

const factorColumns = `id, user_id, status, key_id, secret, algorithm, digits, period, last_step, created_at, activated_at`

// scanFactor scans factorColumns (in nullFactor's order, the one place it is kept).
func scanFactor(row pgx.Row) (*verity.Factor, error) {
	var n nullFactor
	if err := row.Scan(n.dest()...); err != nil {
		return nil, err
	}
	return n.get(), nil
}

// nullFactor scans factorColumns from the nullable side of a LEFT JOIN.
type nullFactor struct {
	id, userID, status, keyID, algorithm *string
	secret                               []byte
	digits, period                       *int
	lastStep                             *int64
	created, activated                   *time.Time
}

func (n *nullFactor) dest() []any {
	return []any{&n.id, &n.userID, &n.status, &n.keyID, &n.secret, &n.algorithm,
		&n.digits, &n.period, &n.lastStep, &n.created, &n.activated}
}

// get returns the factor scanned, nil when the join found none.
func (n *nullFactor) get() *verity.Factor {
	if n.id == nil {
		return nil
	}
	return &verity.Factor{ID: *n.id, UserID: *n.userID, Status: *n.status, KeyID: *n.keyID,
		Secret: n.secret, Algorithm: *n.algorithm, Digits: *n.digits, Period: *n.period, LastStep: *n.lastStep,
		CreatedAt: n.created.UTC(), ActivatedAt: fromNull(n.activated)}
}

// PutPendingFactor inserts or replaces the user's pending factor; the upsert
// leaves an active factor untouched, which is reported as ECONFLICT.
func (db *DB) PutPendingFactor(ctx context.Context, f *verity.Factor) error {
	const op = "postgres.PutPendingFactor"
	if err := checkText(op, f.ID, f.UserID, f.KeyID, f.Algorithm); err != nil {
		return err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `
		INSERT INTO factors (id, user_id, status, key_id, secret, algorithm, digits, period, created_at)
		VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8)
		ON CONFLICT (user_id) DO UPDATE SET
		  id = excluded.id, key_id = excluded.key_id, secret = excluded.secret,
		  algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
		  created_at = excluded.created_at, last_step = 0
		WHERE factors.status = 'pending'`,
		f.ID, f.UserID, f.KeyID, f.Secret, f.Algorithm, f.Digits, f.Period, ts(f.CreatedAt))
	if err != nil {
		return translate(op, err)
	}
	if tag.RowsAffected() == 0 {
		return &verity.Error{Code: verity.ECONFLICT, Op: op}
	}
	return nil
}

// Factor returns the user's factor.
func (db *DB) Factor(ctx context.Context, userID string) (*verity.Factor, error) {
	const op = "postgres.Factor"
	if !storable(userID) {
		return nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	f, err := scanFactor(db.pool.QueryRow(ctx,
		`SELECT `+factorColumns+` FROM factors WHERE user_id = $1`, userID))
	if err != nil {
		return nil, translate(op, err)
	}
	return f, nil
}

// ActivateFactor activates the pending factor, records the step and stores
// the recovery codes in one transaction.
func (db *DB) ActivateFactor(ctx context.Context, a verity.FactorActivation) (bool, error) {
	const op = "postgres.ActivateFactor"
	if !storable(a.FactorID, a.UserID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	activated := false
	err := db.tx(ctx, func(conn *pgx.Conn) error {
		activated = false
		var n int64
		b := begin()
		b.Queue(`
			UPDATE factors SET status = 'active', last_step = $1, activated_at = $2
			WHERE id = $3 AND user_id = $4 AND status = 'pending'`,
			a.Step, ts(a.Now), a.FactorID, a.UserID,
		).Exec(func(tag pgconn.CommandTag) error { n = tag.RowsAffected(); return nil })
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if n == 0 {
			return nil // no longer the pending factor: tx rolls back
		}
		b = &pgx.Batch{}
		b.Queue(`INSERT INTO totp_used_steps (user_id, step, used_at) VALUES ($1, $2, $3)`,
			a.UserID, a.Step, ts(a.Now))
		b.Queue(`DELETE FROM recovery_codes WHERE user_id = $1`, a.UserID)
		b.Queue(`INSERT INTO recovery_codes (user_id, hash) SELECT $1, h FROM unnest($2::bytea[]) AS h`,
			a.UserID, a.RecoveryCodes)
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		activated = true
		return nil
	})
	if err != nil {
		return false, translate(op, err)
	}
	return activated, nil
}

// DeleteFactor removes the user's factor, its used steps and its recovery
// codes in one transaction. The factor's row goes first: that waits for a
// concurrent UseStep holding it, and the later statements, each with a
// fresh snapshot, then see the step it recorded.
func (db *DB) DeleteFactor(ctx context.Context, userID string) error {
	const op = "postgres.DeleteFactor"
	if !storable(userID) {
		return notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int64
	err := db.tx(ctx, func(conn *pgx.Conn) error {
		n = 0
		b := begin()
		b.Queue(`DELETE FROM factors WHERE user_id = $1`, userID).
			Exec(func(tag pgconn.CommandTag) error { n = tag.RowsAffected(); return nil })
		b.Queue(`DELETE FROM totp_used_steps WHERE user_id = $1`, userID)
		b.Queue(`DELETE FROM recovery_codes WHERE user_id = $1`, userID)
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if n == 0 {
			return nil // tx rolls back
		}
		_, err := conn.Exec(ctx, "COMMIT")
		return err
	})
	if err != nil {
		return translate(op, err)
	}
	if n == 0 {
		return notFound(op)
	}
	return nil
}

// UseStep accepts the step in one statement: it advances the factor's last
// step (a conditional UPDATE, so of concurrent uses of one step only the
// first passes last_step < step) and records the step under the unique
// (user, step) key. Should that key already hold the step, the unique
// violation aborts the whole statement, the factor's update included, and
// the step is not accepted.
func (db *DB) UseStep(ctx context.Context, u verity.StepUse) (bool, error) {
	const op = "postgres.UseStep"
	if !storable(u.FactorID, u.UserID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int
	// Steps at or before last_step can never be accepted again, so older
	// rows are dead weight: keep a few for the record, bounded per user.
	err := db.pool.QueryRow(ctx, `
		WITH advanced AS (
		  UPDATE factors SET last_step = $1
		  WHERE id = $2 AND user_id = $3 AND status = 'active' AND last_step < $1
		    AND NOT EXISTS (SELECT 1 FROM users WHERE id = $3 AND failure_count >= $4 AND failure_window_start > $5)
		  RETURNING user_id
		), recorded AS (
		  INSERT INTO totp_used_steps (user_id, step, used_at) SELECT user_id, $1, $6 FROM advanced
		), pruned AS (
		  DELETE FROM totp_used_steps WHERE user_id = $3 AND step < $7 AND EXISTS (SELECT 1 FROM advanced)
		)
		SELECT count(*) FROM advanced`,
		u.Step, u.FactorID, u.UserID, u.FailureLimit, ts(u.FailureWindowStart), ts(u.Now), u.Step-16,
	).Scan(&n)
	if hasCode(err, codeUniqueViolation) {
		return false, nil
	}
	if err != nil {
		return false, translate(op, err)
	}
	return n == 1, nil
}

// UseRecoveryCode marks one matching unused code used in one conditional
// UPDATE; a concurrent use of the same code re-checks used_at after the
// first commits and finds it set.
func (db *DB) UseRecoveryCode(ctx context.Context, u verity.RecoveryUse) (bool, error) {
	if !storable(u.UserID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `
		UPDATE recovery_codes SET used_at = $1
		WHERE user_id = $2 AND hash = $3 AND used_at IS NULL
		  AND NOT EXISTS (SELECT 1 FROM users WHERE id = $2 AND failure_count >= $4 AND failure_window_start > $5)`,
		ts(u.Now), u.UserID, u.Hash, u.FailureLimit, ts(u.FailureWindowStart))
	if err != nil {
		return false, translate("postgres.UseRecoveryCode", err)
	}
	return tag.RowsAffected() == 1, nil
}

// RecoveryCodeUsed reports whether the user has used a code with this hash.
func (db *DB) RecoveryCodeUsed(ctx context.Context, userID string, hash []byte) (bool, error) {
	if !storable(userID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var used bool
	err := db.pool.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM recovery_codes WHERE user_id = $1 AND hash = $2 AND used_at IS NOT NULL)`, userID, hash).Scan(&used)
	return used, translate("postgres.RecoveryCodeUsed", err)
}

// RecoveryCodesLeft counts the user's unused recovery codes.
func (db *DB) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	if !storable(userID) {
		return 0, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var n int
	err := db.pool.QueryRow(ctx,
		`SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	return n, translate("postgres.RecoveryCodesLeft", err)
}

// FactorsNotUnderKey lists factors sealed under another key than keyID.
func (db *DB) FactorsNotUnderKey(ctx context.Context, keyID string, limit int) ([]*verity.Factor, error) {
	const op = "postgres.FactorsNotUnderKey"
	var lim any = limit
	if limit < 0 {
		lim = nil // LIMIT NULL: all rows, as SQLite's negative LIMIT
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx,
		`SELECT `+factorColumns+` FROM factors WHERE key_id <> $1 ORDER BY id LIMIT $2`, keyID, lim)
	if err != nil {
		return nil, translate(op, err)
	}
	defer rows.Close()
	var out []*verity.Factor
	for rows.Next() {
		f, err := scanFactor(rows)
		if err != nil {
			return nil, translate(op, err)
		}
		out = append(out, f)
	}
	return out, translate(op, rows.Err())
}

// RekeyFactor swaps the sealed seed if it is still under oldKeyID.
func (db *DB) RekeyFactor(ctx context.Context, factorID, oldKeyID, newKeyID string, secret []byte) (bool, error) {
	const op = "postgres.RekeyFactor"
	if !storable(factorID, oldKeyID) {
		return false, nil
	}
	if err := checkText(op, newKeyID); err != nil {
		return false, err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx,
		`UPDATE factors SET key_id = $1, secret = $2 WHERE id = $3 AND key_id = $4`,
		newKeyID, secret, factorID, oldKeyID)
	if err != nil {
		return false, translate(op, err)
	}
	return tag.RowsAffected() == 1, nil
}
