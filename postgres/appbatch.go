package postgres

import (
	"context"
	"time"

	"github.com/verityhq/verity"
)

// The write of an authenticator app check. A check's read is shared with
// other checks (decidingCheckSQL), but the code is judged in Go, where the
// seed can be opened, so its write is a second statement. On its own, that
// statement cost PostgreSQL about as much as a whole PIN check and held app
// checks to a third of the PIN checks' rate; shared, app checks ran 75-86 %
// faster at 30-38 % less PostgreSQL CPU each (docs/benchmarks-history.md). So
// concurrent app checks' writes share statements (appWriteSQL), gathered by
// a batcher like the checks' own.

// appWrite is what an app check writes once its code is judged: a right
// code uses its step (use set, as UseStep does), a wrong one counts a
// failure against the user (as CountFailedTry does for a try without a
// PIN).
type appWrite struct {
	use          bool
	userID       string
	factorID     string // use only
	step         int64  // use only
	now          time.Time
	windowStart  time.Time // a failure window that began at or before it has lapsed
	failureLimit int
}

// appWriteResult is whether an app write changed anything.
type appWriteResult struct {
	applied bool
	err     error
}

type appWriteBatcher = batcher[appWrite, appWriteResult]

// newAppWriteBatcher batches app writes as newCheckBatcher batches checks,
// with a statement budget of its own.
func newAppWriteBatcher(db *DB, batch, poolSize int) *appWriteBatcher {
	batch, leaders := batchBounds(batch, poolSize)
	return newBatcherOfAppWrites(db, batch, leaders)
}

// newBatcherOfAppWrites is newAppWriteBatcher with the leaders given.
func newBatcherOfAppWrites(db *DB, batch, leaders int) *appWriteBatcher {
	return newBatcher("postgres.CheckPIN", batch, leaders,
		func(w appWrite) string { return w.userID },
		db.decideAppWrites,
		func(err error) appWriteResult { return appWriteResult{err: err} })
}

// useStepShared is UseStep in a statement shared with other app checks'
// writes. With sharing off (--pg-check-batch 1) it is UseStep, whose
// statement is cheaper than the shared one for a single write.
func (db *DB) useStepShared(ctx context.Context, u verity.StepUse) (bool, error) {
	if !db.appWrites.shares() {
		return db.UseStep(ctx, u)
	}
	if !storable(u.FactorID, u.UserID) {
		return false, nil
	}
	r := db.appWrites.do(ctx, appWrite{use: true, userID: u.UserID, factorID: u.FactorID, step: u.Step,
		now: u.Now, windowStart: u.FailureWindowStart, failureLimit: u.FailureLimit})
	return r.applied, r.err
}

// countAppFailureShared is CountFailedTry for a try without a PIN, in a
// statement shared with other app checks' writes; with sharing off, it is
// CountFailedTry.
func (db *DB) countAppFailureShared(ctx context.Context, f verity.FailedTry) (bool, error) {
	if f.PINID != "" || !db.appWrites.shares() {
		return db.CountFailedTry(ctx, f)
	}
	if !storable(f.UserID) {
		return false, nil
	}
	r := db.appWrites.do(ctx, appWrite{userID: f.UserID, now: f.Now,
		windowStart: f.FailureWindowStart, failureLimit: f.FailureLimit})
	return r.applied, r.err
}

// appWriteSQL makes a batch of app writes of distinct users: element k of
// each array parameter is write k's; $1 the user, $2 the factor and $3 the
// step (for a use), $4 whether it is a use, $5 the failure window start,
// $6 now, $7 the failure limit.
//
// locked locks every write's user, in id order, as every batch does (see
// decidingCheckSQL), if the user is not locked out: as a locking read it
// waits for a concurrent change of the row and re-checks the lockout on
// the committed result. The writes then touch only the rows of users it
// holds, so batches on any number of nodes cannot deadlock, and the single
// statements (UseStep, CountFailedTry), which each change one user's rows,
// never wait for what a batch holds while holding what it waits for.
//
// A use (advanced, recorded, pruned) is UseStep's statement: the factor's
// conditional UPDATE lets only the first of concurrent uses of a step pass
// last_step < step, and records the step under the unique (user, step)
// key; should the key already hold it, the unique violation aborts the
// whole statement, and the batcher runs each write again on its own, where
// that one is not applied. A count (counted) is countFailureSQL's UPDATE,
// on the row locked holds.
const appWriteSQL = `
	WITH c AS (
	  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::timestamptz[], $6::timestamptz[], $7::int[])
	    WITH ORDINALITY AS c(user_id, factor_id, step, use_step, window_start, now, failure_limit, n)
	  LIMIT cardinality($1::text[])
	), locked AS (
	  SELECT u.id FROM c JOIN users u ON u.id = c.user_id
	  WHERE u.failure_window_start IS NULL OR u.failure_window_start <= c.window_start OR u.failure_count < c.failure_limit
	  ORDER BY u.id
	  FOR NO KEY UPDATE OF u
	), advanced AS (
	  UPDATE factors f SET last_step = c.step
	  FROM c JOIN locked l ON l.id = c.user_id
	  WHERE c.use_step AND f.id = c.factor_id AND f.user_id = c.user_id AND f.status = 'active' AND f.last_step < c.step
	  RETURNING f.user_id, c.step, c.now
	), recorded AS (
	  INSERT INTO totp_used_steps (user_id, step, used_at) SELECT user_id, step, now FROM advanced
	), pruned AS (
	  DELETE FROM totp_used_steps t USING advanced a WHERE t.user_id = a.user_id AND t.step < a.step - 16
	), counted AS (
	  UPDATE users u SET
	    failure_count = CASE WHEN u.failure_window_start > c.window_start THEN u.failure_count + 1 ELSE 1 END,
	    failure_window_start = CASE WHEN u.failure_window_start > c.window_start THEN u.failure_window_start ELSE c.now END
	  FROM c JOIN locked l ON l.id = c.user_id
	  WHERE NOT c.use_step AND u.id = c.user_id
	  RETURNING u.id
	)
	SELECT c.n, c.user_id IN (SELECT user_id FROM advanced) OR c.user_id IN (SELECT id FROM counted)
	FROM c`

// decideAppWrites runs appWriteSQL for batch, whose users are distinct. It
// returns a result per write, or an error for the whole statement and no
// results (the batcher answers each write with it; see
// DB.decide for which errors may follow a committed statement). A write
// alone whose step is already recorded is not applied, as with UseStep.
func (db *DB) decideAppWrites(batch []appWrite) ([]appWriteResult, error) {
	const op = "postgres.CheckPIN"
	n := len(batch)
	users, factors := make([]string, n), make([]string, n)
	steps, uses := make([]int64, n), make([]bool, n)
	windowStarts, nows := make([]time.Time, n), make([]time.Time, n)
	failureLimits := make([]int32, n)
	for i, w := range batch {
		users[i], factors[i], steps[i], uses[i] = w.userID, w.factorID, w.step, w.use
		windowStarts[i], nows[i], failureLimits[i] = ts(w.windowStart), ts(w.now), clampInt32(w.failureLimit)
	}
	if err := db.refuseShared(n); err != nil {
		return nil, translate(op, err)
	}
	// One caller's ctx must not cancel the others' writes: the statement
	// has the store's own deadline alone.
	ctx, cancel := db.bound(context.Background())
	defer cancel()
	failed := func(err error) ([]appWriteResult, error) {
		if n == 1 && hasCode(err, codeUniqueViolation) {
			return []appWriteResult{{}}, nil // the step is recorded already: not applied
		}
		return nil, translate(op, err)
	}
	rows, err := db.pool.Query(ctx, appWriteSQL, users, factors, steps, uses, windowStarts, nows, failureLimits)
	if err != nil {
		return failed(err)
	}
	defer rows.Close()
	results, found := make([]appWriteResult, n), make([]bool, n)
	for rows.Next() {
		var k int64 // the write's ordinal, from 1
		var applied bool
		if err := rows.Scan(&k, &applied); err != nil {
			return nil, translate(op, err)
		}
		if k < 1 || k > int64(n) || found[k-1] {
			return nil, verity.Errorf(verity.EINTERNAL, "%s: the app write statement answered for write %d of %d twice or out of range", op, k, n)
		}
		found[k-1] = true
		results[k-1].applied = applied
	}
	if err := rows.Err(); err != nil {
		return failed(err)
	}
	for i := range found {
		if !found[i] {
			return nil, verity.Errorf(verity.EINTERNAL, "%s: the app write statement did not answer for write %d of %d", op, i+1, n)
		}
	}
	return results, nil
}
