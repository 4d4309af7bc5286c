package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
)

// DefaultCheckBatch is how many PIN checks one statement decides at most
// (Options.CheckBatch). PostgreSQL's cost per statement is mostly starting
// its plan and committing, whatever the batch holds: measured with pgbench
// on this statement, a check alone cost PostgreSQL 260-290 µs of CPU, and
// one of eight in a batch 82-88 µs (docs/benchmarks-history.md).
const DefaultCheckBatch = 16

// checkBatcher runs the checks that decidingCheckSQL decides, in
// statements they share (see batcher).
type checkBatcher = batcher[verity.PINCheck, checkResult]

// checkResult is what decidingCheckSQL read and did for one check.
type checkResult struct {
	user *verity.User
	pin  *verity.PIN
	app  *verity.Factor
	d    deciding
	err  error
}

// newCheckBatcher batches up to batch checks per statement (0: the
// default) on a pool of poolSize connections. Unless batching is off, at
// most a quarter of the pool (GOMAXPROCS with the default pool) runs check
// statements at once: PostgreSQL's CPUs, not round trips, limit checks, and
// fewer statements in flight make fuller ones. Measured on two CPUs
// (docs/benchmarks-history.md), half the pool, 4 statements, peaked at
// 11,300-13,400 checks/s, a quarter at 14,300-14,700, a statement per check
// at 4,000-4,300.
func newCheckBatcher(db *DB, batch, poolSize int) *checkBatcher {
	batch, leaders := batchBounds(batch, poolSize)
	return newBatcherOfChecks(db, batch, leaders)
}

// batchBounds is how many calls a statement takes at most (batch, 0 for
// the default) and how many statements run at once on a pool of poolSize
// connections: a quarter of the pool when calls share statements, else the
// whole pool.
func batchBounds(batch, poolSize int) (perStatement, leaders int) {
	if batch <= 0 {
		batch = DefaultCheckBatch
	}
	if batch == 1 {
		return 1, poolSize
	}
	return batch, poolSize / 4
}

// newBatcherOfChecks is newCheckBatcher with the leaders given.
func newBatcherOfChecks(db *DB, batch, leaders int) *checkBatcher {
	return newBatcher("postgres.CheckPIN", batch, leaders,
		func(c verity.PINCheck) string { return c.UserID },
		db.decide,
		func(err error) checkResult { return checkResult{err: err} })
}

// decidingCheck runs c through decidingCheckSQL, in a statement shared with
// other concurrent checks (see batcher.do).
func (db *DB) decidingCheck(ctx context.Context, c verity.PINCheck) (*verity.User, *verity.PIN, *verity.Factor, deciding, error) {
	const op = "postgres.CheckPIN"
	if !storable(c.ServiceID, c.UserID) {
		return nil, nil, nil, deciding{}, notFound(op)
	}
	r := db.checks.do(ctx, c)
	return r.user, r.pin, r.app, r.d, r.err
}

// decide runs decidingCheckSQL for batch, whose users are distinct. It
// returns a result per call, or an error for the whole statement. An error
// from PostgreSQL means nothing the statement did committed; an answer that
// cannot be read (a scan error, a check answered twice) comes after the
// statement ran, so it may have: rolledBack tells the two apart, and only
// the first is run again.
func (db *DB) decide(batch []verity.PINCheck) ([]checkResult, error) {
	const op = "postgres.CheckPIN"
	n := len(batch)
	users, services := make([]string, n), make([]string, n)
	windowStarts, nows := make([]time.Time, n), make([]time.Time, n)
	failureLimits, maxAttempts := make([]int32, n), make([]int32, n)
	hashes := make([][]byte, n)
	for i, c := range batch {
		users[i], services[i] = c.UserID, c.ServiceID
		windowStarts[i], nows[i] = ts(c.FailureWindowStart), ts(c.Now)
		failureLimits[i], maxAttempts[i] = clampInt32(c.FailureLimit), clampInt32(c.MaxAttempts)
		hashes[i] = c.CodeHash
	}
	// One caller's ctx must not cancel the others' checks: the statement
	// has the store's own deadline alone.
	ctx, cancel := db.bound(context.Background())
	defer cancel()
	if err := db.refuseShared(n); err != nil {
		return make([]checkResult, n), translate(op, err)
	}
	rows, err := db.pool.Query(ctx, decidingCheckSQL, users, services, windowStarts, nows, failureLimits, maxAttempts, hashes)
	if err != nil {
		return make([]checkResult, n), translate(op, err)
	}
	defer rows.Close()
	results := make([]checkResult, n)
	found := make([]bool, n)
	for rows.Next() {
		var pin nullPIN
		var app nullFactor
		var d deciding
		var k int64 // the check's ordinal, from 1
		dest := append(append(pin.dest(), app.dest()...), &d.decided, &d.matched, &k, &d.applied)
		u, err := scanUser(rows, dest...)
		if err != nil {
			return make([]checkResult, n), translate(op, err)
		}
		if k < 1 || k > int64(n) || found[k-1] {
			return make([]checkResult, n), verity.Errorf(verity.EINTERNAL, "%s: the statement answered for check %d of %d twice or out of range", op, k, n)
		}
		found[k-1] = true
		results[k-1] = checkResult{user: u, pin: pin.get(u.ID), app: app.get(), d: d}
	}
	if err := rows.Err(); err != nil {
		return make([]checkResult, n), translate(op, err)
	}
	for i := range results {
		if !found[i] {
			results[i].err = translate(op, pgx.ErrNoRows) // no such user in the service
		}
	}
	return results, nil
}

// refuseShared is the tests' hook (DB.failSharedCheck): the error a
// statement shared by n calls fails with before it is sent, or nil.
func (db *DB) refuseShared(n int) error {
	if db.failSharedCheck == nil || n < 2 {
		return nil
	}
	err := db.failSharedCheck()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", errSharedCheckFailed, err)
	}
	return err
}

// clampInt32 fits a limit into the statement's int parameters; limits are
// small, and one beyond int32 is as good as unlimited.
func clampInt32(v int) int32 {
	const maxInt32 = 1<<31 - 1
	switch {
	case v > maxInt32:
		return maxInt32
	case v < -maxInt32:
		return -maxInt32
	}
	return int32(v)
}
