package sqlite

import (
	"context"

	"github.com/verityhq/verity"
)

const factorColumns = `id, user_id, status, key_id, secret, algorithm, digits, period, last_step, created_at, activated_at`

func scanFactor(row scanner) (*verity.Factor, error) {
	f := &verity.Factor{}
	var created, activated int64
	if err := row.Scan(&f.ID, &f.UserID, &f.Status, &f.KeyID, &f.Secret, &f.Algorithm,
		&f.Digits, &f.Period, &f.LastStep, &created, &activated); err != nil {
		return nil, err
	}
	f.CreatedAt, f.ActivatedAt = fromMicros(created), fromMicros(activated)
	return f, nil
}

// PutPendingFactor inserts or replaces the user's pending factor; the upsert
// leaves an active factor untouched, which is reported as ECONFLICT.
func (db *DB) PutPendingFactor(ctx context.Context, f *verity.Factor) error {
	n, err := db.execCount(ctx, `
		INSERT INTO factors (id, user_id, status, key_id, secret, algorithm, digits, period, created_at)
		VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET
		  id = excluded.id, key_id = excluded.key_id, secret = excluded.secret,
		  algorithm = excluded.algorithm, digits = excluded.digits, period = excluded.period,
		  created_at = excluded.created_at, last_step = 0
		WHERE factors.status = 'pending'`,
		f.ID, f.UserID, f.KeyID, f.Secret, f.Algorithm, f.Digits, f.Period, micros(f.CreatedAt))
	if err != nil {
		return translate("sqlite.PutPendingFactor", err)
	}
	if n == 0 { // the upsert's WHERE kept an active factor
		return &verity.Error{Code: verity.ECONFLICT, Op: "sqlite.PutPendingFactor"}
	}
	return nil
}

// Factor returns the user's factor.
func (db *DB) Factor(ctx context.Context, userID string) (*verity.Factor, error) {
	f, err := scanFactor(db.queryRow(ctx,
		`SELECT `+factorColumns+` FROM factors WHERE user_id = ?`, userID))
	if err != nil {
		return nil, translate("sqlite.Factor", err)
	}
	return f, nil
}

// ActivateFactor activates the pending factor, records the step and stores
// the recovery codes in one transaction.
func (db *DB) ActivateFactor(ctx context.Context, a verity.FactorActivation) (bool, error) {
	activated := false
	err := db.q.write(ctx, func(tx *wtx) error {
		activated = false
		res, err := tx.Exec(`
			UPDATE factors SET status = 'active', last_step = ?, activated_at = ?
			WHERE id = ? AND user_id = ? AND status = 'pending'`,
			a.Step, micros(a.Now), a.FactorID, a.UserID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO totp_used_steps (user_id, step, used_at) VALUES (?, ?, ?)`,
			a.UserID, a.Step, micros(a.Now)); err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM recovery_codes WHERE user_id = ?`, a.UserID); err != nil {
			return err
		}
		for _, h := range a.RecoveryCodes {
			if _, err := tx.Exec(`INSERT INTO recovery_codes (user_id, hash) VALUES (?, ?)`, a.UserID, h); err != nil {
				return err
			}
		}
		activated = true
		return nil
	})
	return activated, translate("sqlite.ActivateFactor", err)
}

// DeleteFactor removes the user's factor and everything that belongs to it.
func (db *DB) DeleteFactor(ctx context.Context, userID string) error {
	found := false
	err := db.q.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM factors WHERE user_id = ?`, userID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		found = true
		for _, q := range []string{
			`DELETE FROM totp_used_steps WHERE user_id = ?`,
			`DELETE FROM recovery_codes WHERE user_id = ?`,
		} {
			if _, err := tx.Exec(q, userID); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && !found {
		return notFound("sqlite.DeleteFactor")
	}
	return translate("sqlite.DeleteFactor", err)
}

// UseStep records the step in the unique (user, step) table and advances the
// factor's last step, in one transaction: a replay hits the key and fails.
func (db *DB) UseStep(ctx context.Context, u verity.StepUse) (bool, error) {
	used := false
	err := db.q.write(ctx, func(tx *wtx) (err error) {
		used, err = useStep(tx, u, 0)
		return err
	})
	return used, translate("sqlite.UseStep", err)
}

// useStep is UseStep's statements, for a write that runs in a savepoint: it
// returns errRollback when the unique key refuses a replay. userSeq is the
// user's seq when the write read it, else 0 (see userSeqArg).
func useStep(tx *wtx, u verity.StepUse, userSeq int64) (bool, error) {
	res, err := tx.Exec(`
		UPDATE factors SET last_step = ?1
		WHERE id = ?2 AND user_id = ?3 AND status = 'active' AND last_step < ?1
		  AND NOT EXISTS (SELECT 1 FROM user_failures
		                  WHERE user_seq = coalesce(?6, (SELECT seq FROM users WHERE id = ?3))
		                    AND failure_count >= ?4 AND window_start > ?5)`,
		u.Step, u.FactorID, u.UserID, u.FailureLimit, micros(u.FailureWindowStart), userSeqArg(userSeq))
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if _, err := tx.Exec(`INSERT INTO totp_used_steps (user_id, step, used_at) VALUES (?, ?, ?)`,
		u.UserID, u.Step, micros(u.Now)); err != nil {
		if verity.ErrorCode(translate("", err)) == verity.ECONFLICT {
			return false, errRollback // a replay: the unique key refused it
		}
		return false, err
	}
	// Steps at or before last_step can never be accepted again, so older
	// rows are dead weight: keep a few for the record, bounded per user.
	if _, err := tx.Exec(`DELETE FROM totp_used_steps WHERE user_id = ? AND step < ?`,
		u.UserID, u.Step-16); err != nil {
		return false, err
	}
	return true, nil
}

// UseRecoveryCode marks one matching unused code used in one conditional UPDATE.
func (db *DB) UseRecoveryCode(ctx context.Context, u verity.RecoveryUse) (bool, error) {
	n, err := db.execCount(ctx, `
		UPDATE recovery_codes SET used_at = ?1
		WHERE user_id = ?2 AND hash = ?3 AND used_at = 0
		  AND NOT EXISTS (SELECT 1 FROM user_failures
		                  WHERE user_seq = (SELECT seq FROM users WHERE id = ?2)
		                    AND failure_count >= ?4 AND window_start > ?5)`,
		micros(u.Now), u.UserID, u.Hash, u.FailureLimit, micros(u.FailureWindowStart))
	return n == 1, translate("sqlite.UseRecoveryCode", err)
}

// RecoveryCodeUsed reports whether the user has used a code with this hash.
func (db *DB) RecoveryCodeUsed(ctx context.Context, userID string, hash []byte) (bool, error) {
	var used bool
	err := db.queryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM recovery_codes WHERE user_id = ? AND hash = ? AND used_at <> 0)`, userID, hash).Scan(&used)
	return used, translate("sqlite.RecoveryCodeUsed", err)
}

// RecoveryCodesLeft counts the user's unused recovery codes.
func (db *DB) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	var n int
	err := db.queryRow(ctx,
		`SELECT count(*) FROM recovery_codes WHERE user_id = ? AND used_at = 0`, userID).Scan(&n)
	return n, translate("sqlite.RecoveryCodesLeft", err)
}

// FactorsNotUnderKey lists factors sealed under another key than keyID.
func (db *DB) FactorsNotUnderKey(ctx context.Context, keyID string, limit int) ([]*verity.Factor, error) {
	rows, err := db.reader.QueryContext(ctx,
		`SELECT `+factorColumns+` FROM factors WHERE key_id <> ? ORDER BY id LIMIT ?`, keyID, limit)
	if err != nil {
		return nil, translate("sqlite.FactorsNotUnderKey", err)
	}
	defer rows.Close()
	var out []*verity.Factor
	for rows.Next() {
		f, err := scanFactor(rows)
		if err != nil {
			return nil, translate("sqlite.FactorsNotUnderKey", err)
		}
		out = append(out, f)
	}
	return out, translate("sqlite.FactorsNotUnderKey", rows.Err())
}

// RekeyFactor swaps the sealed seed if it is still under oldKeyID.
func (db *DB) RekeyFactor(ctx context.Context, factorID, oldKeyID, newKeyID string, secret []byte) (bool, error) {
	n, err := db.execCount(ctx,
		`UPDATE factors SET key_id = ?, secret = ? WHERE id = ? AND key_id = ?`,
		newKeyID, secret, factorID, oldKeyID)
	return n == 1, translate("sqlite.RekeyFactor", err)
}
