package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/verityhq/verity"
)

// startPINQuery reads what a start decides on in one statement: the user,
// its sends inside the window (count and oldest), how many older ones are
// left to prune, and its newest PIN (when it was sent and whether it was
// verified). The aggregate row always exists; the newest PIN may not. The
// failure budget is joined after the aggregate: joined before it, SQLite
// materialises the aggregate into a temporary table on every start
// (measured at a million users: 17 % fewer starts) instead of running it
// as a co-routine.
var startPINQuery = `
		SELECT ` + userColumns + `, u.seq, w.n, w.oldest, w.older, l.created_at, l.consumed_at IS NOT NULL
		FROM users u
		JOIN (SELECT count(*) FILTER (WHERE created_at > ?3) AS n,
		             coalesce(min(created_at) FILTER (WHERE created_at > ?3), 0) AS oldest,
		             count(*) FILTER (WHERE created_at <= ?3) AS older
		      FROM pins WHERE user_id = ?1) w
		` + failuresJoin + `
		LEFT JOIN pins l ON l.seq = (SELECT max(seq) FROM pins WHERE user_id = ?1)
		WHERE u.id = ?1 AND u.service_id = ?2`

// StartPIN inserts p.PIN as the user's pending PIN if p's limits allow, in
// one write: the single writer means no concurrent start can slip past a limit.
// A start that only inserts (nothing to prune, no "totp" to undo) makes one
// change, which SQLite undoes by itself if it fails, and so runs without a
// savepoint; one that changes more wraps its changes in one.
func (db *DB) StartPIN(ctx context.Context, p verity.PINStart) (verity.PINStarted, error) {
	var out verity.PINStarted
	err := db.q.writeStatementKeeping(ctx, p.PIN.UserID, func(tx *wtx) error {
		out = verity.PINStarted{}
		var (
			seq, oldest, older int64
			last               sql.NullInt64
			lastVerified       sql.NullBool
		)
		seen := &out.Seen
		u, err := scanUser(tx.QueryRow(startPINQuery, p.PIN.UserID, p.ServiceID, micros(p.SendWindowStart)),
			&seq, &seen.SendsInWindow, &oldest, &older, &last, &lastVerified)
		if err != nil {
			return err
		}
		out.User = u
		seen.Failures, seen.FailuresSince = u.FailureCount, u.FailureWindowStart
		seen.OldestInWindow = fromMicros(oldest)
		seen.LastSent, seen.LastVerified = fromMicros(last.Int64), lastVerified.Bool
		if !p.Allows(*seen) {
			return nil
		}
		undoTOTP := u.LastMethod == "totp"
		changes := func() error {
			if _, err := tx.Exec(
				`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
				p.PIN.ID, p.PIN.UserID, p.PIN.Hash, micros(p.PIN.CreatedAt), micros(p.PIN.ExpiresAt),
			); err != nil {
				return err
			}
			// History older than the send window no longer counts: keep
			// each user's rows bounded. The read above counted it; the
			// statement is skipped when there is none.
			if older > 0 {
				if _, err := tx.Exec(
					`DELETE FROM pins WHERE user_id = ? AND created_at <= ? AND id <> ?`,
					p.PIN.UserID, micros(p.SendWindowStart), p.PIN.ID,
				); err != nil {
					return err
				}
			}
			// Only an authenticator start has to be undone: "" and "sms"
			// both mean "not the app" (see verity.User.LastMethod), so a
			// user's first starts leave the row alone. Here rather than in
			// a second write; the row read above is current (this is the
			// single writer's transaction).
			if undoTOTP {
				if _, err := tx.Exec(`UPDATE users SET last_method = 'sms' WHERE id = ?`, p.PIN.UserID); err != nil {
					return err
				}
			}
			return nil
		}
		if older > 0 || undoTOTP {
			err = tx.atomically(changes)
		} else {
			err = changes() // the INSERT alone
		}
		if err != nil {
			return err
		}
		if undoTOTP {
			u.LastMethod = "sms"
		}
		out.Started = true
		// The user's next check finds what it reads here. The times as
		// stored: to the microsecond.
		tx.q.pins.put(u, seq, &verity.PIN{ID: p.PIN.ID, UserID: p.PIN.UserID, Hash: p.PIN.Hash,
			CreatedAt: fromMicros(micros(p.PIN.CreatedAt)), ExpiresAt: fromMicros(micros(p.PIN.ExpiresAt))})
		return nil
	})
	if err != nil {
		return verity.PINStarted{}, translate("sqlite.StartPIN", err)
	}
	return out, nil
}

// abortPINStatement deletes PIN ?2 among user ?1's PINs, found through
// pins_user_seq (pins have no index on their ids).
const abortPINStatement = `DELETE FROM pins WHERE user_id = ? AND id = ?`

// AbortPIN deletes a PIN whose delivery failed.
func (db *DB) AbortPIN(ctx context.Context, userID, pinID string) error {
	return translate("sqlite.AbortPIN", db.userPINWrite(ctx, userID, abortPINStatement, userID, pinID))
}

// userPINWrite runs one statement that changes only user userID's PINs and
// drops that user from the PIN cache, which refills on the next read; the
// other users stay. (A write that may change anything clears the whole
// cache: when a gateway fails every start, each of them would.)
func (db *DB) userPINWrite(ctx context.Context, userID, query string, args ...any) error {
	return db.q.writeStatementKeeping(ctx, userID, func(tx *wtx) error {
		if _, err := tx.Exec(query, args...); err != nil {
			return err
		}
		tx.q.pins.drop(userID)
		return nil
	})
}

// expirePINStatement ends PIN ?2 among user ?1's PINs at ?3.
const expirePINStatement = `UPDATE pins SET expires_at = ?3
	WHERE user_id = ?1 AND id = ?2 AND consumed_at IS NULL AND expires_at > ?3`

// ExpirePIN ends a PIN whose delivery may have reached the phone, keeping
// its send.
func (db *DB) ExpirePIN(ctx context.Context, userID, pinID string, at time.Time) error {
	return translate("sqlite.ExpirePIN", db.userPINWrite(ctx, userID, expirePINStatement, userID, pinID, micros(at)))
}

// PendingPIN returns the user's newest PIN.
func (db *DB) PendingPIN(ctx context.Context, userID string) (*verity.PIN, error) {
	p := &verity.PIN{UserID: userID}
	var created, expires int64
	var consumed sql.NullInt64
	err := db.queryRow(ctx,
		`SELECT id, hash, created_at, expires_at, attempts, consumed_at FROM pins WHERE user_id = ? ORDER BY seq DESC LIMIT 1`,
		userID,
	).Scan(&p.ID, &p.Hash, &created, &expires, &p.Attempts, &consumed)
	if err != nil {
		return nil, translate("sqlite.PendingPIN", err)
	}
	p.CreatedAt, p.ExpiresAt = fromMicros(created), fromMicros(expires)
	if consumed.Valid {
		t := fromMicros(consumed.Int64)
		p.ConsumedAt = &t
	}
	return p, nil
}

// userWithPINQuery is built once: the statement cache is keyed by the text,
// and a check must not rebuild it per request.
var userWithPINQuery = `
		SELECT ` + userColumns + `, u.seq, p.id, p.hash, p.created_at, p.expires_at, p.attempts, p.consumed_at
		FROM ` + usersWithFailures + ` LEFT JOIN pins p ON p.seq = (SELECT max(seq) FROM pins WHERE user_id = u.id)
		WHERE u.id = ? AND u.service_id = ?`

// UserWithPIN reads the user and its newest PIN in one statement.
func (db *DB) UserWithPIN(ctx context.Context, serviceID, id string) (*verity.User, *verity.PIN, error) {
	u, _, p, err := scanUserWithPIN(db.queryRow(ctx, userWithPINQuery, id, serviceID))
	return u, p, translate("sqlite.UserWithPIN", err)
}

// scanUserWithPIN scans userWithPINQuery: the user, its seq and its newest PIN.
func scanUserWithPIN(row scanner) (u *verity.User, seq int64, p *verity.PIN, err error) {
	var (
		pinID                      sql.NullString
		hash                       []byte
		created, expires, attempts sql.NullInt64
		consumed                   sql.NullInt64
	)
	u, err = scanUser(row, &seq, &pinID, &hash, &created, &expires, &attempts, &consumed)
	if err != nil {
		return nil, 0, nil, err
	}
	if !pinID.Valid {
		return u, seq, nil, nil
	}
	p = &verity.PIN{ID: pinID.String, UserID: u.ID, Hash: hash, CreatedAt: fromMicros(created.Int64),
		ExpiresAt: fromMicros(expires.Int64), Attempts: int(attempts.Int64)}
	if consumed.Valid {
		t := fromMicros(consumed.Int64)
		p.ConsumedAt = &t
	}
	return u, seq, p, nil
}

// CheckPIN reads, judges and writes in one operation of the single writer,
// inside its transaction: nothing can change the user, the PIN or the app
// between the read and the write. The read comes from the PIN cache when
// the user is in it (see pinCache), else from the writer's connection,
// whose page cache stays warm, where a reader's is dropped after every
// commit of the writer. The judges run on the writer goroutine, so every
// write waits while they run; opening a seed may reload the keyring file
// after a key rotation.
func (db *DB) CheckPIN(ctx context.Context, c verity.PINCheck) (verity.PINChecked, error) {
	var out verity.PINChecked
	// The read and a consume are one change statement at most; the two
	// statements of a counted try, and those of a used step, are made
	// atomically. So a check needs no savepoint unless it counts or uses.
	err := db.q.writeStatementKeeping(ctx, c.UserID, func(tx *wtx) (err error) {
		// Judge runs on the writer goroutine: a panic there must fail this
		// write, not stop every write.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("judge panicked: %v", r)
			}
		}()
		out = verity.PINChecked{}
		cache := tx.q.pins
		u, seq, p, cached := cache.get(c.UserID, c.ServiceID)
		if !cached {
			if u, seq, p, err = scanUserWithPIN(tx.QueryRow(userWithPINQuery, c.UserID, c.ServiceID)); err != nil {
				return err
			}
			cache.put(u, seq, p)
		}
		out.User, out.PIN = u, p
		out.Verdict = c.Judge(u, p)
		if p == nil && (out.Verdict == verity.ConsumeIt || out.Verdict == verity.CountIt) {
			out.Verdict = verity.LeaveAsIs // nothing to apply it to
		}
		switch out.Verdict {
		case verity.ConsumeIt:
			// Used, the PIN is done with: its room in the cache goes to
			// pending ones. Not applied, something changed under the cache.
			out.Applied, err = consumePIN(tx, c.Consume(p), seq)
			cache.drop(u.ID)
			return err
		case verity.CountIt:
			try := c.FailedTry(p)
			err = tx.atomically(func() (err error) {
				out.Applied, err = countFailedTry(tx, try, seq)
				return err // errRollback undoes a half-counted try
			})
			if out.Applied && err == nil {
				cache.counted(try)
			} else {
				cache.drop(u.ID)
			}
			return err
		case verity.ToTheApp:
			app, known := cache.app(u.ID)
			if !known {
				app, err = scanFactor(tx.QueryRow(
					`SELECT `+factorColumns+` FROM factors WHERE user_id = ? AND status = 'active'`, u.ID))
				if err == sql.ErrNoRows {
					app, err = nil, nil
				} else if err != nil {
					return err
				}
				cache.putApp(u.ID, app)
			}
			out.Factor = app
			if app == nil || c.JudgeApp == nil {
				return nil
			}
			out.AppVerdict, out.Step = c.JudgeApp(u, out.Factor)
			switch out.AppVerdict {
			case verity.UseStepIt:
				// The app's own tables: the cached user and PIN stand.
				use := c.StepUse(out.Factor, out.Step)
				err = tx.atomically(func() (err error) {
					out.Applied, err = useStep(tx, use, seq)
					return err // errRollback undoes a refused replay
				})
				if out.Applied && err == nil {
					cache.stepUsed(u.ID, use.FactorID, use.Step)
				} else {
					cache.drop(u.ID)
				}
				return err
			case verity.CountIt:
				try := c.AppFailedTry(u)
				if out.Applied, err = countFailedTry(tx, try, seq); out.Applied && err == nil { // one statement without a PIN
					cache.counted(try)
				} else {
					cache.drop(u.ID)
				}
				return err
			}
		}
		return nil
	})
	return out, translate("sqlite.CheckPIN", err)
}

// ConsumePIN marks the PIN used in one conditional UPDATE: of any number of
// concurrent calls for one PIN, exactly one changes the row.
func (db *DB) ConsumePIN(ctx context.Context, c verity.PINConsume) (bool, error) {
	consumed := false
	err := db.q.writeStatement(ctx, func(tx *wtx) (err error) {
		consumed, err = consumePIN(tx, c, 0)
		return err
	})
	return consumed, translate("sqlite.ConsumePIN", err)
}

// consumePINStatement marks PIN ?2 used if it is user ?4's newest: the row
// is found by that seq (a rowid search; pins have no index on their ids),
// then its id compared.
const consumePINStatement = `
		UPDATE pins SET consumed_at = ?1
		WHERE seq = (SELECT max(seq) FROM pins WHERE user_id = ?4)
		  AND id = ?2 AND consumed_at IS NULL AND expires_at > ?1 AND attempts < ?3
		  AND NOT EXISTS (SELECT 1 FROM user_failures
		                  WHERE user_seq = coalesce(?7, (SELECT seq FROM users WHERE id = ?4))
		                    AND failure_count >= ?5 AND window_start > ?6)`

// consumePIN is ConsumePIN's one statement, for any write; userSeq is the
// user's seq when the write read it, else 0 (see userSeqArg).
func consumePIN(tx *wtx, c verity.PINConsume, userSeq int64) (bool, error) {
	res, err := tx.Exec(consumePINStatement,
		micros(c.Now), c.PINID, c.MaxAttempts, c.UserID, c.FailureLimit, micros(c.FailureWindowStart), userSeqArg(userSeq))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// CountFailedTry counts a wrong try against the PIN and the user's failure
// budget in one write; neither counter can pass its limit.
func (db *DB) CountFailedTry(ctx context.Context, f verity.FailedTry) (bool, error) {
	counted := false
	err := db.q.write(ctx, func(tx *wtx) (err error) {
		counted, err = countFailedTry(tx, f, 0)
		return err
	})
	return counted, translate("sqlite.CountFailedTry", err)
}

// countFailure counts a failure against a budget: the INSERT of
// countFailureBySeq or countFailureByID, whose ?1 is the user's seq or id.
const countFailure = `
		ON CONFLICT (user_seq) DO UPDATE SET
		  failure_count = CASE WHEN window_start > ?2 THEN failure_count + 1 ELSE 1 END,
		  window_start = CASE WHEN window_start > ?2 THEN window_start ELSE ?3 END
		WHERE NOT (window_start > ?2 AND failure_count >= ?4)`

var (
	countFailureBySeq = `INSERT INTO user_failures (user_seq, failure_count, window_start) VALUES (?1, 1, ?3)` + countFailure
	countFailureByID  = `INSERT INTO user_failures (user_seq, failure_count, window_start)
		SELECT seq, 1, ?3 FROM users WHERE id = ?1` + countFailure
)

// countTryStatement counts a wrong try against PIN ?1 of user ?2. Pins have
// no index on their ids: the row is found among the user's PINs, newest
// first, so the PIN a check counts against, its user's newest, is the
// first one looked at.
const countTryStatement = `
			UPDATE pins SET attempts = attempts + 1
			WHERE seq = (SELECT seq FROM pins WHERE user_id = ?2 AND id = ?1 ORDER BY seq DESC LIMIT 1)
			  AND consumed_at IS NULL AND expires_at > ?3 AND attempts < ?4`

// countFailedTry is CountFailedTry's statements, for a write that runs in a
// savepoint: it returns errRollback when the PIN's count would stand alone.
// userSeq is the user's seq when the write read it, else 0 (see userSeqArg).
func countFailedTry(tx *wtx, f verity.FailedTry, userSeq int64) (bool, error) {
	if f.PINID != "" {
		res, err := tx.Exec(countTryStatement, f.PINID, f.UserID, micros(f.Now), f.MaxAttempts)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return false, cmpOr(err, errRollback)
		}
	}
	// A window that began at or before FailureWindowStart has lapsed: this
	// failure opens a new one. A user without a row has none open; one
	// that no longer exists gets none (no users row to insert from).
	query, key := countFailureBySeq, any(userSeq)
	if userSeq == 0 {
		query, key = countFailureByID, f.UserID
	}
	res, err := tx.Exec(query, key, micros(f.FailureWindowStart), micros(f.Now), f.FailureLimit)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, cmpOr(err, errRollback) // the PIN's count must not stand alone
	}
	return true, nil
}

// DeletePINsBefore removes PINs created before t, and the failure budgets
// whose window began before it: no window is that long (see the Store
// method), and a lapsed one counts for what no row counts for, nothing. So
// user_failures holds only users who have failed lately.
func (db *DB) DeletePINsBefore(ctx context.Context, t time.Time) (int64, error) {
	n, err := db.execCount(ctx, `DELETE FROM pins WHERE created_at < ?`, micros(t))
	if err == nil {
		err = db.pruneFailures(ctx, t)
	}
	return n, translate("sqlite.DeletePINsBefore", err)
}

// pruneChunk is how many budgets one write of pruneFailures looks at.
var pruneChunk = 1000

// pruneFailures deletes the budgets whose window began before t, one chunk
// of the table at a time in key order. user_failures has no index on
// window_start (every wrong code would rewrite it), so finding them means
// reading the table, after an attack on many users a million rows, some
// 100-200 ms: in chunks, the single writer serves other writes in between.
func (db *DB) pruneFailures(ctx context.Context, t time.Time) error {
	var after int64
	for {
		var (
			last sql.NullInt64
			seen int
		)
		err := db.q.write(ctx, func(tx *wtx) error {
			if err := tx.QueryRow(`SELECT max(user_seq), count(*) FROM
				(SELECT user_seq FROM user_failures WHERE user_seq > ? ORDER BY user_seq LIMIT ?)`,
				after, pruneChunk).Scan(&last, &seen); err != nil {
				return err
			}
			if seen == 0 {
				return nil
			}
			_, err := tx.Exec(`DELETE FROM user_failures WHERE user_seq > ? AND user_seq <= ? AND window_start < ?`,
				after, last.Int64, micros(t))
			return err
		})
		if err != nil || seen < pruneChunk {
			return err
		}
		after = last.Int64
	}
}
