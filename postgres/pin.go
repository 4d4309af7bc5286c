package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
)

// StartPIN inserts p.PIN as the user's pending PIN if p's limits allow. It
// locks the user's row first, so that concurrent starts for one user, on
// any node, take turns; each then reads the history in a statement of its
// own, whose fresh READ COMMITTED snapshot includes the PIN the previous
// one committed. (Reading the history in the locking statement would not:
// a statement that waited for a row lock keeps the snapshot it began with.)
// p.Allows decides; the insert and the pruning of old history commit
// together.
func (db *DB) StartPIN(ctx context.Context, p verity.PINStart) (verity.PINStarted, error) {
	const op = "postgres.StartPIN"
	if !storable(p.PIN.UserID, p.ServiceID) {
		return verity.PINStarted{}, notFound(op)
	}
	if err := checkText(op, p.PIN.ID); err != nil {
		return verity.PINStarted{}, err
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var out verity.PINStarted
	err := db.tx(ctx, func(conn *pgx.Conn) error {
		out = verity.PINStarted{}
		seen := &out.Seen
		var oldest, last *time.Time
		var older int64
		b := begin()
		// FOR NO KEY UPDATE conflicts with itself and with the UPDATEs that
		// count failures, which is all the serialization needed, while
		// still letting other transactions insert rows that reference the
		// user (their foreign-key checks take KEY SHARE).
		b.Queue(`SELECT `+userColumns+` FROM users WHERE id = $1 AND service_id = $2 FOR NO KEY UPDATE`,
			p.PIN.UserID, p.ServiceID,
		).QueryRow(func(row pgx.Row) (err error) {
			out.User, err = scanUser(row)
			return err
		})
		// The whole history of the user, in the window and before it: each
		// start prunes what lies before, so it stays a few rows, and the
		// count of those tells whether this start has any to prune.
		b.Queue(`
			SELECT w.n, w.oldest, w.older, l.created_at, l.consumed_at IS NOT NULL
			FROM (SELECT count(*) FILTER (WHERE created_at > $2) AS n,
			             min(created_at) FILTER (WHERE created_at > $2) AS oldest,
			             count(*) FILTER (WHERE created_at <= $2) AS older
			      FROM pins WHERE user_id = $1) w
			LEFT JOIN LATERAL (SELECT created_at, consumed_at FROM pins
			                   WHERE user_id = $1 ORDER BY seq DESC LIMIT 1) l ON true`,
			p.PIN.UserID, ts(p.SendWindowStart),
		).QueryRow(func(row pgx.Row) error {
			return row.Scan(&seen.SendsInWindow, &oldest, &older, &last, &seen.LastVerified)
		})
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		seen.Failures, seen.FailuresSince = out.User.FailureCount, out.User.FailureWindowStart
		seen.OldestInWindow = fromNull(oldest)
		seen.LastSent = fromNull(last)
		if !p.Allows(*seen) {
			return nil // tx rolls back
		}

		b = &pgx.Batch{}
		b.Queue(`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			p.PIN.ID, p.PIN.UserID, p.PIN.Hash, ts(p.PIN.CreatedAt), ts(p.PIN.ExpiresAt))
		// History older than the send window no longer counts: keep each
		// user's rows bounded. Skipped when the read found none: only a
		// start adds history, under the user's lock this one holds, and
		// history before the window counts for nothing anyway.
		if older > 0 {
			b.Queue(`DELETE FROM pins WHERE user_id = $1 AND created_at <= $2 AND id <> $3`,
				p.PIN.UserID, ts(p.SendWindowStart), p.PIN.ID)
		}
		// Only an authenticator start has to be undone: "" and "sms" both
		// mean "not the app" (see verity.User.LastMethod), so a user's
		// first starts leave the row alone, and send no statement for it.
		// The row read above is current: this transaction holds its lock,
		// which SetLastMethod's UPDATE would wait for.
		undoTOTP := out.User.LastMethod == "totp"
		if undoTOTP {
			b.Queue(`UPDATE users SET last_method = 'sms' WHERE id = $1`, p.PIN.UserID)
		}
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if undoTOTP {
			out.User.LastMethod = "sms"
		}
		out.Started = true
		return nil
	})
	if err != nil {
		return verity.PINStarted{}, translate(op, err)
	}
	return out, nil
}

// AbortPIN deletes a PIN whose delivery failed.
func (db *DB) AbortPIN(ctx context.Context, userID, pinID string) error {
	if !storable(pinID, userID) {
		return nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx, `DELETE FROM pins WHERE id = $1 AND user_id = $2`, pinID, userID)
	return translate("postgres.AbortPIN", err)
}

// ExpirePIN ends a PIN whose delivery may have reached the phone, keeping
// its send.
func (db *DB) ExpirePIN(ctx context.Context, userID, pinID string, at time.Time) error {
	if !storable(pinID, userID) {
		return nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx, `UPDATE pins SET expires_at = $3
		WHERE id = $1 AND user_id = $2 AND consumed_at IS NULL AND expires_at > $3`, pinID, userID, at)
	return translate("postgres.ExpirePIN", err)
}

// PendingPIN returns the user's newest PIN.
func (db *DB) PendingPIN(ctx context.Context, userID string) (*verity.PIN, error) {
	const op = "postgres.PendingPIN"
	if !storable(userID) {
		return nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	p := &verity.PIN{UserID: userID}
	err := db.pool.QueryRow(ctx,
		`SELECT id, hash, created_at, expires_at, attempts, consumed_at FROM pins WHERE user_id = $1 ORDER BY seq DESC LIMIT 1`,
		userID,
	).Scan(&p.ID, &p.Hash, &p.CreatedAt, &p.ExpiresAt, &p.Attempts, &p.ConsumedAt)
	if err != nil {
		return nil, translate(op, err)
	}
	p.CreatedAt, p.ExpiresAt = p.CreatedAt.UTC(), p.ExpiresAt.UTC()
	if p.ConsumedAt != nil {
		t := p.ConsumedAt.UTC()
		p.ConsumedAt = &t
	}
	return p, nil
}

// The reads of a check, built once: the user and its newest PIN (p), and
// for CheckPIN also its active authenticator app (f), so that a check sent
// to the app needs no read of its own.
var (
	userWithPINFrom = `
		FROM users u LEFT JOIN LATERAL (
		  SELECT * FROM pins WHERE user_id = u.id ORDER BY seq DESC LIMIT 1) p ON true`
	userWithPINColumns = prefixed("u.", userColumns) + `, ` + prefixed("p.", checkedPINColumns)
	userWithPINQuery   = `SELECT ` + userWithPINColumns + userWithPINFrom + `
		WHERE u.id = $1 AND u.service_id = $2`
	checkPINQuery = `SELECT ` + userWithPINColumns + `, ` + prefixed("f.", factorColumns) + userWithPINFrom + `
		LEFT JOIN factors f ON f.user_id = u.id AND f.status = 'active'
		WHERE u.id = $1 AND u.service_id = $2`
)

// UserWithPIN reads the user and its newest PIN in one statement.
func (db *DB) UserWithPIN(ctx context.Context, serviceID, id string) (*verity.User, *verity.PIN, error) {
	const op = "postgres.UserWithPIN"
	if !storable(serviceID, id) {
		return nil, nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var pin nullPIN
	u, err := scanUser(db.pool.QueryRow(ctx, userWithPINQuery, id, serviceID), pin.dest()...)
	if err != nil {
		return nil, nil, translate(op, err)
	}
	return u, pin.get(u.ID), nil
}

// userWithPINAndApp reads what CheckPIN judges: the user, its newest PIN
// and its active authenticator app (each nil when there is none).
func (db *DB) userWithPINAndApp(ctx context.Context, serviceID, id string) (*verity.User, *verity.PIN, *verity.Factor, error) {
	const op = "postgres.CheckPIN"
	if !storable(serviceID, id) {
		return nil, nil, nil, notFound(op)
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var pin nullPIN
	var app nullFactor
	u, err := scanUser(db.pool.QueryRow(ctx, checkPINQuery, id, serviceID), append(pin.dest(), app.dest()...)...)
	if err != nil {
		return nil, nil, nil, translate(op, err)
	}
	return u, pin.get(u.ID), app.get(), nil
}

// nullPIN scans a PIN's columns from the nullable side of a LEFT JOIN.
type nullPIN struct {
	id               *string
	hash             []byte
	created, expires *time.Time
	attempts         *int
	consumed         *time.Time
}

func (n *nullPIN) dest() []any {
	return []any{&n.id, &n.hash, &n.created, &n.expires, &n.attempts, &n.consumed}
}

// get returns the PIN scanned, nil when the join found none.
func (n *nullPIN) get(userID string) *verity.PIN {
	if n.id == nil {
		return nil
	}
	p := &verity.PIN{ID: *n.id, UserID: userID, Hash: n.hash, CreatedAt: n.created.UTC(), ExpiresAt: n.expires.UTC(), Attempts: *n.attempts}
	if n.consumed != nil {
		t := n.consumed.UTC()
		p.ConsumedAt = &t
	}
	return p
}

// checkPINRounds bounds how often CheckPIN reads again after losing a race.
const checkPINRounds = 3

// CheckPIN reads the user, its newest PIN and its active app in one
// statement, shared with other concurrent checks (decidingCheckSQL) unless
// sharing is off and there is no typed code's hash to decide with. With
// c.CodeHash (verity.PINCheck says when it applies) that statement also
// decides and writes, comparing the typed code's hash with
// the PIN's in SQL (decidingCheckSQL): a check is then one round trip.
// Otherwise it judges in Go and applies the verdict with ConsumePIN's,
// CountFailedTry's or UseStep's conditional write, which other nodes cannot
// slip past: two round trips. An authenticator app's code is always judged
// in Go, and its write shares a statement with other app checks' writes
// (appWriteSQL). Holding a row lock across the judge would cost
// two more; instead, when the write finds that a concurrent check changed
// the state since the read, it reads and judges again.
func (db *DB) CheckPIN(ctx context.Context, c verity.PINCheck) (verity.PINChecked, error) {
	var out verity.PINChecked
	for round := range checkPINRounds {
		var u *verity.User
		var p *verity.PIN
		var app *verity.Factor
		var decided deciding
		var err error
		if round == 0 && (len(c.CodeHash) == verity.CodeHashSize || db.checks.shares()) {
			// Shared with other checks; without the typed code's hash
			// (an authenticator app's code, a check by auth id) the
			// statement only reads, which a statement of its own
			// (userWithPINAndApp) does more cheaply when nothing shares.
			u, p, app, decided, err = db.decidingCheck(ctx, c)
		} else {
			u, p, app, err = db.userWithPINAndApp(ctx, c.ServiceID, c.UserID)
		}
		if err != nil {
			return verity.PINChecked{}, err
		}
		out = verity.PINChecked{User: u, PIN: p, Verdict: c.Judge(u, p)}
		if p == nil && (out.Verdict == verity.ConsumeIt || out.Verdict == verity.CountIt) {
			out.Verdict = verity.LeaveAsIs // nothing to apply it to
		}
		if decided.decided {
			if want := decided.verdict(); out.Verdict != want {
				// A defect in the caller's judge: the statement's write,
				// if it made one, stands (it was committed with the read).
				return verity.PINChecked{}, verity.Errorf(verity.EINTERNAL,
					"postgres.CheckPIN: the judge gave verdict %d where the PIN's hash gave %d (written: %v)",
					out.Verdict, want, decided.applied)
			}
			if decided.applied {
				out.Applied = true
				return out, nil
			}
			continue // a concurrent check changed the PIN or the user first: read and judge again
		}
		switch out.Verdict {
		case verity.ConsumeIt:
			out.Applied, err = db.ConsumePIN(ctx, c.Consume(p))
		case verity.CountIt:
			out.Applied, err = db.CountFailedTry(ctx, c.FailedTry(p))
		case verity.ToTheApp:
			out.Factor = app
			if app == nil || c.JudgeApp == nil {
				return out, nil
			}
			out.AppVerdict, out.Step = c.JudgeApp(u, app)
			switch out.AppVerdict {
			case verity.UseStepIt:
				out.Applied, err = db.useStepShared(ctx, c.StepUse(app, out.Step))
			case verity.CountIt:
				out.Applied, err = db.countAppFailureShared(ctx, c.AppFailedTry(u))
			default:
				return out, nil
			}
			if err != nil || out.Applied {
				return out, err
			}
			continue // a concurrent check won: read and judge again
		default:
			return out, nil
		}
		if err != nil || out.Applied {
			return out, err
		}
	}
	return out, nil
}

// deciding is what decidingCheckSQL decided and did.
type deciding struct {
	decided bool // the statement judged the PIN: verity.PINCheck.CodeHash's conditions held
	matched bool // the code was right
	applied bool // its write changed the PIN (and, for a wrong code, the user)
}

// verdict is the verdict Judge must agree with when the statement decided.
func (d deciding) verdict() verity.PINVerdict {
	if d.matched {
		return verity.ConsumeIt
	}
	return verity.CountIt
}

// decidingCheckSQL reads what userWithPINAndApp reads and, in the same
// statement, applies a PIN check's verdict, for a batch of checks of
// distinct users (checkBatcher gathers them): element k of each array
// parameter is check k's, $1 the user, $2 the service, $3 the failure
// window start, $4 now, $5 the failure limit, $6 the PIN's try limit, $7
// the typed code's hash. A check of a user not in its service has no row.
//
// r decides a check when the user's latest start was not the authenticator
// app (last_method "" or "sms", as verity.User.LastMethod says), its newest
// PIN is pending (unused, unexpired, under its try limit), the user is not
// locked out, and the PIN's hash has the typed hash's length and tag byte;
// it then compares the MACs after the tag in constant time: the XOR of the
// two, as 256 bits, ORed together in four 64-bit words, is zero only when
// they are equal, and no step depends on where they differ. r is read once,
// from the statement's snapshot, and every part below sees the same one.
//
// locked then locks every decided check's user, in id order, as every
// batch does: a statement holding several users' rows waits only for a user
// later in that order, and touches a PIN only under its own lock of the
// PIN's user (StartPIN, ConsumePIN and countFailedTrySQL take them in the
// same order, one user each), so batches on any number of nodes cannot deadlock. The
// lock also re-checks the lockout on the committed row, leaving out a user
// that reached its limit meanwhile: a right code too, which otherwise would
// use the PIN after another node's wrong code had locked the user out, an
// order no serial run gives.
//
// A right code consumes the PIN (consume) if the row itself is still
// unused, unexpired and under its try limit; that it is the user's newest
// PIN, r saw in the statement's snapshot, as ConsumePIN's subquery sees it
// in its own. A wrong one counts the try against the PIN (count_pin) and
// then the user's failure (count_user), on the row locked holds, as
// countFailedTrySQL does. A concurrent UPDATE of
// the same row makes a write wait and re-evaluate its WHERE on the
// committed row, so, as with the separate statements, at most one check
// consumes a PIN and no counter passes its limit; a check whose write finds
// the row changed applies nothing, and CheckPIN reads again.
//
// Every row is found through its key, whatever the tables' statistics say:
// PostgreSQL plans a prepared statement once for all arrays, and with
// statistics from when the tables were small (a node started before a bulk
// import, before autovacuum's next ANALYZE) it hash-joined the checks with
// a scan of every user: 21 ms a statement at 150,000 users, measured. So c's
// LIMIT, a no-op (every array has the batch's length), tells the planner
// that the batch is small, which keeps every join a loop over the checks;
// and the users and factors are LATERAL subqueries with LIMIT 1 (id and
// user_id are unique), which PostgreSQL does not merge into a join it could
// plan as a scan.
var decidingCheckSQL = `
	WITH c AS (
	  SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::int[], $7::bytea[])
	    WITH ORDINALITY AS c(user_id, service_id, window_start, now, failure_limit, max_attempts, code_hash, n)
	  LIMIT cardinality($1::text[])
	), r AS (
	  SELECT ` + aliased("u", userColumns) + `, ` + aliased("p", checkedPINColumns) + `, ` + aliased("f", factorColumns) + `,
	    d.decides, CASE WHEN d.decides THEN (
	      SELECT (substring(x FROM 1 FOR 64)::bigint | substring(x FROM 65 FOR 64)::bigint
	            | substring(x FROM 129 FOR 64)::bigint | substring(x FROM 193 FOR 64)::bigint) = 0
	      FROM (SELECT ('x' || encode(substring(p.hash FROM 2), 'hex'))::bit(256)
	                 # ('x' || encode(substring(c.code_hash FROM 2), 'hex'))::bit(256) AS x) xor
	    ) ELSE false END AS matches,
	    c.n, c.window_start, c.now, c.failure_limit, c.max_attempts
	  FROM c CROSS JOIN LATERAL (SELECT * FROM users WHERE id = c.user_id AND service_id = c.service_id LIMIT 1) u
	  LEFT JOIN LATERAL (SELECT * FROM pins WHERE user_id = u.id ORDER BY seq DESC LIMIT 1) p ON true
	  LEFT JOIN LATERAL (SELECT * FROM factors WHERE user_id = u.id AND status = 'active' LIMIT 1) f ON true
	  CROSS JOIN LATERAL (SELECT COALESCE(
	    u.last_method <> 'totp' AND p.consumed_at IS NULL AND p.expires_at > c.now AND p.attempts < c.max_attempts
	    AND (u.failure_window_start IS NULL OR u.failure_window_start <= c.window_start OR u.failure_count < c.failure_limit)
	    AND length(p.hash) = 33 AND length(c.code_hash) = 33 AND get_byte(p.hash, 0) = get_byte(c.code_hash, 0),
	    false) AS decides) d
	), locked AS (
	  SELECT u.id FROM r JOIN users u ON u.id = r.u_id
	  WHERE r.decides
	    AND (u.failure_window_start IS NULL OR u.failure_window_start <= r.window_start OR u.failure_count < r.failure_limit)
	  ORDER BY u.id
	  FOR NO KEY UPDATE OF u
	), consume AS (
	  UPDATE pins p SET consumed_at = r.now
	  FROM r JOIN locked l ON l.id = r.u_id
	  WHERE r.matches AND p.id = r.p_id AND p.user_id = r.u_id
	    AND p.consumed_at IS NULL AND p.expires_at > r.now AND p.attempts < r.max_attempts
	  RETURNING p.user_id
	), count_pin AS (
	  UPDATE pins p SET attempts = p.attempts + 1
	  FROM r JOIN locked l ON l.id = r.u_id
	  WHERE NOT r.matches AND p.id = r.p_id AND p.user_id = r.u_id
	    AND p.consumed_at IS NULL AND p.expires_at > r.now AND p.attempts < r.max_attempts
	  RETURNING p.user_id
	), count_user AS (
	  UPDATE users u SET
	    failure_count = CASE WHEN u.failure_window_start > r.window_start THEN u.failure_count + 1 ELSE 1 END,
	    failure_window_start = CASE WHEN u.failure_window_start > r.window_start THEN u.failure_window_start ELSE r.now END
	  FROM r JOIN count_pin cp ON cp.user_id = r.u_id
	  WHERE u.id = r.u_id
	  RETURNING u.id
	)
	SELECT ` + aliasedNames("u", userColumns) + `, ` + aliasedNames("p", checkedPINColumns) + `, ` + aliasedNames("f", factorColumns) + `,
	  r.decides, r.matches, r.n, r.u_id IN (SELECT user_id FROM consume) OR r.u_id IN (SELECT id FROM count_user)
	FROM r`

// DecidingCheckSQL returns the statement PIN checks with the typed code's
// hash run (decidingCheckSQL: element k of each array parameter is check
// k's; $1 the user, $2 the service, $3 the failure window start, $4 now, $5
// the failure limit, $6 the PIN's try limit, $7 the typed code's hash). The
// benchmark has pgbench run it on its own, to tell PostgreSQL's cost for it
// from Verity's.
func DecidingCheckSQL() string { return decidingCheckSQL }

// checkedPINColumns are the columns of a PIN that a check reads.
const checkedPINColumns = `id, hash, created_at, expires_at, attempts, consumed_at`

// aliased selects every column of a comma-separated list from a table
// alias under a name of its own, alias_column: a CTE that holds several
// tables' columns then names each once.
func aliased(alias, columns string) string {
	var b strings.Builder
	for i, col := range strings.Split(columns, ", ") {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(alias + "." + col + " AS " + alias + "_" + col)
	}
	return b.String()
}

// aliasedNames lists the names aliased gives the columns.
func aliasedNames(alias, columns string) string {
	return alias + "_" + strings.ReplaceAll(columns, ", ", ", "+alias+"_")
}

// prefixed qualifies every column of a comma-separated list with a table alias.
func prefixed(alias, columns string) string {
	return alias + strings.ReplaceAll(columns, ", ", ", "+alias)
}

// ConsumePIN marks the PIN used in one conditional UPDATE. Of any number of
// concurrent calls for one PIN, one takes the row lock and the others wait
// for it, then re-evaluate the WHERE on the row it committed and find
// consumed_at set: exactly one changes the row. The user's row is locked
// first (the order every statement takes them in), and its failure budget
// checked on the committed row: a wrong code that locked the user out while
// this waited leaves the PIN unused, as it would one after the other.
func (db *DB) ConsumePIN(ctx context.Context, c verity.PINConsume) (bool, error) {
	if !storable(c.PINID, c.UserID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `
		WITH locked AS (
		  SELECT id FROM users
		  WHERE id = $4 AND (failure_window_start IS NULL OR failure_window_start <= $6 OR failure_count < $5)
		  FOR NO KEY UPDATE
		)
		UPDATE pins SET consumed_at = $1
		WHERE id = $2 AND consumed_at IS NULL AND expires_at > $1 AND attempts < $3
		  AND seq = (SELECT max(seq) FROM pins WHERE user_id = $4)
		  AND EXISTS (SELECT 1 FROM locked)`,
		ts(c.Now), c.PINID, c.MaxAttempts, c.UserID, c.FailureLimit, ts(c.FailureWindowStart))
	if err != nil {
		return false, translate("postgres.ConsumePIN", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Both failure statements take $1 the user, $2 the failure window start (a
// window that began at or before it has lapsed), $3 now (when a lapsed
// window's successor begins) and $4 the failure limit; they share these
// fragments so that they cannot drift apart.
const (
	userNotLockedOut = `(failure_window_start IS NULL OR failure_window_start <= $2 OR failure_count < $4)`
	countUserFailure = `
	UPDATE users SET
	  failure_count = CASE WHEN failure_window_start > $2 THEN failure_count + 1 ELSE 1 END,
	  failure_window_start = CASE WHEN failure_window_start > $2 THEN failure_window_start ELSE $3 END`
)

// countFailureSQL counts one failure against the user unless the user is
// locked out.
const countFailureSQL = countUserFailure + `
	WHERE id = $1 AND ` + userNotLockedOut

// countFailedTrySQL counts a wrong try against a PIN ($5, with $6 its
// attempt limit) and its user in one statement, both or neither. u locks
// the user's row first (the order StartPIN takes them in) if the user is
// not locked out; as a locking read it waits for a concurrent change of the
// row and re-checks the lockout against the committed result, so concurrent
// tries for one user take turns here. p then counts the try against the PIN
// if the PIN has room, re-checked on the committed row if a concurrent
// consume, prune or abort changed it meanwhile. The main UPDATE counts the
// failure against the user only if p counted, on the row u still holds, so
// no limit can be passed and neither counter moves alone. Each EXISTS is
// uncorrelated, a one-time filter that runs its CTE before the scan it
// guards: the locks are taken in order. Like every single statement here it
// relies on READ COMMITTED being the database's default (see the package
// comment).
const countFailedTrySQL = `
	WITH u AS (
	  SELECT id FROM users WHERE id = $1 AND ` + userNotLockedOut + `
	  FOR NO KEY UPDATE
	), p AS (
	  UPDATE pins SET attempts = attempts + 1
	  WHERE id = $5 AND user_id = $1 AND consumed_at IS NULL AND expires_at > $3 AND attempts < $6
	    AND EXISTS (SELECT 1 FROM u)
	  RETURNING 1
	)` + countUserFailure + `
	WHERE id = $1 AND EXISTS (SELECT 1 FROM p)`

// CountFailedTry counts a wrong try against the PIN and the user's failure
// budget together or not at all; neither counter can pass its limit. With
// a PIN it is one statement (countFailedTrySQL), one round trip.
func (db *DB) CountFailedTry(ctx context.Context, f verity.FailedTry) (bool, error) {
	const op = "postgres.CountFailedTry"
	if !storable(f.PINID, f.UserID) {
		return false, nil
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var tag pgconn.CommandTag
	var err error
	if f.PINID == "" {
		tag, err = db.pool.Exec(ctx, countFailureSQL,
			f.UserID, ts(f.FailureWindowStart), ts(f.Now), f.FailureLimit)
	} else {
		tag, err = db.pool.Exec(ctx, countFailedTrySQL,
			f.UserID, ts(f.FailureWindowStart), ts(f.Now), f.FailureLimit, f.PINID, f.MaxAttempts)
	}
	if err != nil {
		return false, translate(op, err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeletePINsBefore removes PINs created before t.
func (db *DB) DeletePINsBefore(ctx context.Context, t time.Time) (int64, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `DELETE FROM pins WHERE created_at < $1`, ts(t))
	if err != nil {
		return 0, translate("postgres.DeletePINsBefore", err)
	}
	return tag.RowsAffected(), nil
}
