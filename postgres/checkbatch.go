package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
)

// DefaultCheckBatch is how many PIN checks one statement decides at most
// (Options.CheckBatch). PostgreSQL's cost per statement is mostly starting
// its plan and committing, whatever the batch holds: measured with pgbench
// on this statement, a check alone cost PostgreSQL 260-290 µs of CPU, and
// one of eight in a batch 82-88 µs (docs/benchmarks-history.md).
const DefaultCheckBatch = 16

// checkBatcher runs the checks that decidingCheckSQL decides, gathering
// the checks that arrive while others are in flight into shared
// statements. A check finding fewer than maxLeaders statements in flight
// leads one at once, with whatever else is queued; only when that many are
// running do checks queue, and the next statement takes them together. A leader's call returns when its own check is done,
// handing the lead on to a queued check if there is one; so no caller runs
// other callers' statements for longer than it waits for its own.
//
// Two checks of one user never share a statement: the later one waits for
// the next. A statement that fails is run again one check at a time, so one
// check's failure fails only that check.
type checkBatcher struct {
	db         *DB
	maxBatch   int // checks per statement
	maxLeaders int // statements in flight

	mu       sync.Mutex
	queue    []*checkCall   // not yet taken into a statement, oldest first
	leaders  int            // calls with lead set and not yet returned
	inFlight map[string]int // users with a check in a statement, and how many
}

// checkCall is one check waiting for, or in, a statement.
type checkCall struct {
	check verity.PINCheck
	wake  chan struct{} // signalled when done or lead changes; capacity 1

	// Guarded by checkBatcher.mu.
	taken bool // in a statement
	done  bool // result is set
	lead  bool // this call's goroutine runs statements

	result checkResult // written before done is set
}

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
// (docs/benchmarks.md), half the pool, 4 statements, peaked at 11,300-13,400
// checks/s, a quarter at 14,300-14,700, a statement per check at
// 4,000-4,300.
func newCheckBatcher(db *DB, batch, poolSize int) *checkBatcher {
	if batch <= 0 {
		batch = DefaultCheckBatch
	}
	leaders := poolSize
	if batch > 1 {
		leaders = poolSize / 4
	}
	return &checkBatcher{db: db, maxBatch: batch, maxLeaders: max(1, leaders), inFlight: map[string]int{}}
}

// decidingCheck runs c through decidingCheckSQL, in a statement shared with
// other concurrent checks. A ctx that ends while c is still queued
// withdraws it; once c is in a statement, the call waits for its result
// (the statement is bounded by Options.StatementTimeout) rather than
// abandon a write that may commit.
func (db *DB) decidingCheck(ctx context.Context, c verity.PINCheck) (*verity.User, *verity.PIN, *verity.Factor, deciding, error) {
	const op = "postgres.CheckPIN"
	if !storable(c.ServiceID, c.UserID) {
		return nil, nil, nil, deciding{}, notFound(op)
	}
	r := db.checks.do(ctx, c)
	return r.user, r.pin, r.app, r.d, r.err
}

func (b *checkBatcher) do(ctx context.Context, c verity.PINCheck) checkResult {
	if err := ctx.Err(); err != nil {
		return checkResult{err: fmt.Errorf("postgres.CheckPIN: %w", err)}
	}
	call := &checkCall{check: c, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, call)
	if b.leaders < b.maxLeaders {
		b.leaders++
		call.lead = true
	}
	b.mu.Unlock()

	done := ctx.Done()
	for {
		b.mu.Lock()
		if call.lead {
			b.mu.Unlock()
			if b.lead(call) {
				return call.result
			}
			continue // another leader has this call's check in flight
		}
		if call.done {
			b.mu.Unlock()
			return call.result
		}
		b.mu.Unlock()
		select {
		case <-call.wake:
		case <-done:
			b.mu.Lock()
			if !call.taken && !call.lead {
				b.withdrawLocked(call)
				b.mu.Unlock()
				return checkResult{err: fmt.Errorf("postgres.CheckPIN: %w", ctx.Err())}
			}
			b.mu.Unlock()
			done = nil // in a statement already: wait for it
		}
	}
}

// lead runs statements for the queue until call's own check is done, then
// passes the lead on, and reports true. It reports false, having given up
// the lead, when nothing in the queue can be taken (call's check is in
// another leader's statement, or waits for one to end): the call then
// waits like any other.
func (b *checkBatcher) lead(call *checkCall) bool {
	for {
		b.mu.Lock()
		if call.done {
			call.lead = false
			b.passLeadLocked()
			b.mu.Unlock()
			return true
		}
		batch := b.takeLocked()
		if len(batch) == 0 {
			// Nothing can be taken: call's check, and any other queued,
			// waits for a statement in flight, whose leader takes them
			// or hands on the lead when it is done.
			call.lead = false
			b.leaders--
			b.mu.Unlock()
			return false
		}
		b.mu.Unlock()
		b.run(batch, call)
	}
}

// takeLocked removes from the queue, oldest first, up to maxBatch checks of
// distinct users that have no check in a statement already: a second
// statement holding one of them would only wait for the first's row lock,
// holding its other users' locks meanwhile.
func (b *checkBatcher) takeLocked() []*checkCall {
	var batch []*checkCall
	kept := b.queue[:0]
	for _, call := range b.queue {
		if len(batch) < b.maxBatch && b.inFlight[call.check.UserID] == 0 {
			b.inFlight[call.check.UserID]++
			call.taken = true
			batch = append(batch, call)
			continue
		}
		kept = append(kept, call)
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	return batch
}

// passLeadLocked hands a leaving leader's place to the oldest queued call
// that is not leading, or frees it when there is none.
func (b *checkBatcher) passLeadLocked() {
	for _, next := range b.queue {
		if !next.lead {
			next.lead = true
			signal(next.wake)
			return
		}
	}
	b.leaders--
}

// withdrawLocked removes a call that was never taken from the queue.
func (b *checkBatcher) withdrawLocked(call *checkCall) {
	for i, queued := range b.queue {
		if queued == call {
			last := len(b.queue) - 1
			copy(b.queue[i:], b.queue[i+1:])
			b.queue[last] = nil
			b.queue = b.queue[:last]
			return
		}
	}
}

// run decides batch in one statement, or, if PostgreSQL refused or aborted
// that statement (so none of it committed), each check in a statement of its
// own, and hands every call its result.
func (b *checkBatcher) run(batch []*checkCall, self *checkCall) {
	results, err := b.decide(batch)
	if err != nil && len(batch) > 1 && rolledBack(err) {
		for i := range batch {
			var one []checkResult
			if one, err = b.decide(batch[i : i+1]); err != nil {
				one = []checkResult{{err: err}}
				if !rolledBack(err) {
					// Unavailable or out of time: the rest would only fail
					// again, a deadline at a time.
					for j := i; j < len(batch); j++ {
						results[j] = checkResult{err: err}
					}
					break
				}
			}
			results[i] = one[0]
		}
	} else if err != nil {
		for i := range results {
			results[i] = checkResult{err: err}
		}
	}
	b.mu.Lock()
	for i, call := range batch {
		call.result = results[i]
		call.done = true
		if b.inFlight[call.check.UserID]--; b.inFlight[call.check.UserID] == 0 {
			delete(b.inFlight, call.check.UserID)
		}
	}
	b.mu.Unlock()
	for _, call := range batch {
		if call != self {
			signal(call.wake)
		}
	}
}

// decide is DB.decide with a panic turned into an error for each of
// batch's checks: a panic on a leader's goroutine would otherwise leave the
// batch's other callers waiting for ever, their users marked in a
// statement and the leader's place taken. Where it panicked is unknown, so
// the statement may have committed: the error is not one to run it again.
func (b *checkBatcher) decide(batch []*checkCall) (results []checkResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			results = make([]checkResult, len(batch))
			err = verity.Errorf(verity.EINTERNAL, "postgres.CheckPIN: deciding %d checks panicked: %v", len(batch), r)
		}
	}()
	return b.db.decide(batch)
}

// rolledBack reports whether err is PostgreSQL's own error for a statement
// that it aborted, so that nothing the statement did committed and its
// checks may run again, and running them again may succeed: not a
// statement or lock timeout, and not a connection lost while the answer
// was on its way, after which the statement may have committed.
func rolledBack(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code != codeQueryCanceled && pe.Code != codeLockNotAvailable &&
			verity.ErrorCode(err) != verity.EUNAVAILABLE
	}
	return errors.Is(err, errSharedCheckFailed) // the tests' stand-in for such an error
}

// errSharedCheckFailed wraps the error the tests' hook (DB.failSharedCheck)
// fails a shared statement with, before it is sent.
var errSharedCheckFailed = errors.New("shared check statement refused")

// signal wakes the goroutine waiting on ch, if it is not awake already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// decide runs decidingCheckSQL for batch, whose users are distinct. It
// returns a result per call, or an error for the whole statement. An error
// from PostgreSQL means nothing the statement did committed; an answer that
// cannot be read (a scan error, a check answered twice) comes after the
// statement ran, so it may have: rolledBack tells the two apart, and only
// the first is run again.
func (db *DB) decide(batch []*checkCall) ([]checkResult, error) {
	const op = "postgres.CheckPIN"
	n := len(batch)
	users, services := make([]string, n), make([]string, n)
	windowStarts, nows := make([]time.Time, n), make([]time.Time, n)
	failureLimits, maxAttempts := make([]int32, n), make([]int32, n)
	hashes := make([][]byte, n)
	for i, call := range batch {
		c := call.check
		users[i], services[i] = c.UserID, c.ServiceID
		windowStarts[i], nows[i] = ts(c.FailureWindowStart), ts(c.Now)
		failureLimits[i], maxAttempts[i] = clampInt32(c.FailureLimit), clampInt32(c.MaxAttempts)
		hashes[i] = c.CodeHash
	}
	// One caller's ctx must not cancel the others' checks: the statement
	// has the store's own deadline alone.
	ctx, cancel := db.bound(context.Background())
	defer cancel()
	if db.failSharedCheck != nil && n > 1 {
		if err := db.failSharedCheck(); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w: %w", errSharedCheckFailed, err)
			}
			return make([]checkResult, n), translate(op, err)
		}
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
