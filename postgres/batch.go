package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
)

// batcher runs calls of one kind (PIN checks, the writes of authenticator
// app checks) in statements they share, gathering the calls that arrive
// while others are in flight. PostgreSQL's cost per statement is mostly
// starting its plan and committing, whatever the statement holds, so a
// shared statement costs each call a fraction of one of its own. A call
// finding fewer than maxLeaders statements in flight leads one at once,
// with whatever else is queued; only when that many are running do calls
// queue, and the next statement takes them together. A leader's call
// returns when its own call is done, handing the lead on to a queued call
// if there is one; so no caller runs other callers' statements for longer
// than it waits for its own.
//
// Two calls for one user never share a statement: the later one waits for
// the next. A statement that PostgreSQL refused or aborted is run again one
// call at a time, so one call's failure fails only that call.
type batcher[C, R any] struct {
	op         string                       // the store method, for errors
	user       func(C) string               // the user whose rows a call changes
	decide     func(batch []C) ([]R, error) // one statement for batch: a result per call, or an error for the whole statement
	failed     func(err error) R            // a call's result when it fails with err
	maxBatch   int                          // calls per statement
	maxLeaders int                          // statements in flight

	mu       sync.Mutex
	queue    []*batchCall[C, R] // not yet taken into a statement, oldest first
	leaders  int                // calls with lead set and not yet returned
	inFlight map[string]int     // users with a call in a statement, and how many
}

// batchCall is one call waiting for, or in, a statement.
type batchCall[C, R any] struct {
	in   C
	wake chan struct{} // signalled when done or lead changes; capacity 1

	// Guarded by batcher.mu.
	taken bool // in a statement
	done  bool // result is set
	lead  bool // this call's goroutine runs statements

	result R // written before done is set
}

// newBatcher batches up to batch calls per statement (at least 1) and runs
// at most leaders statements at once (at least 1).
func newBatcher[C, R any](op string, batch, leaders int, user func(C) string,
	decide func([]C) ([]R, error), failed func(error) R) *batcher[C, R] {
	return &batcher[C, R]{op: op, user: user, decide: decide, failed: failed,
		maxBatch: max(1, batch), maxLeaders: max(1, leaders), inFlight: map[string]int{}}
}

// shares reports whether calls may share a statement: with a batch of one
// (--pg-check-batch 1) each call is a statement of its own, and callers
// with a cheaper single statement for the job send that instead.
func (b *batcher[C, R]) shares() bool { return b.maxBatch > 1 }

// do runs in in a shared statement and returns its result. A ctx that ends
// while in is still queued withdraws it; once in is in a statement, the
// call waits for its result (the statement is bounded by
// Options.StatementTimeout) rather than abandon a write that may commit.
func (b *batcher[C, R]) do(ctx context.Context, in C) R {
	if err := ctx.Err(); err != nil {
		return b.failed(fmt.Errorf("%s: %w", b.op, err))
	}
	call := &batchCall[C, R]{in: in, wake: make(chan struct{}, 1)}
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
			continue // another leader has this call in flight
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
				return b.failed(fmt.Errorf("%s: %w", b.op, ctx.Err()))
			}
			b.mu.Unlock()
			done = nil // in a statement already: wait for it
		}
	}
}

// lead runs statements for the queue until call is done, then passes the
// lead on, and reports true. It reports false, having given up the lead,
// when nothing in the queue can be taken (call is in another leader's
// statement, or waits for one to end): the call then waits like any other.
func (b *batcher[C, R]) lead(call *batchCall[C, R]) bool {
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
			// Nothing can be taken: call, and any other queued, waits for
			// a statement in flight, whose leader takes them or hands on
			// the lead when it is done.
			call.lead = false
			b.leaders--
			b.mu.Unlock()
			return false
		}
		b.mu.Unlock()
		b.run(batch, call)
	}
}

// takeLocked removes from the queue, oldest first, up to maxBatch calls of
// distinct users that have no call in a statement already: a second
// statement holding one of them would only wait for the first's row lock,
// holding its other users' locks meanwhile.
func (b *batcher[C, R]) takeLocked() []*batchCall[C, R] {
	var batch []*batchCall[C, R]
	kept := b.queue[:0]
	for _, call := range b.queue {
		if user := b.user(call.in); len(batch) < b.maxBatch && b.inFlight[user] == 0 {
			b.inFlight[user]++
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
func (b *batcher[C, R]) passLeadLocked() {
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
func (b *batcher[C, R]) withdrawLocked(call *batchCall[C, R]) {
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

// run runs batch in one statement, or, if PostgreSQL refused or aborted
// that statement (so none of it committed), each call in a statement of its
// own, and hands every call its result.
func (b *batcher[C, R]) run(batch []*batchCall[C, R], self *batchCall[C, R]) {
	ins := make([]C, len(batch))
	for i, call := range batch {
		ins[i] = call.in
	}
	results, err := b.safeDecide(ins)
	if err != nil && len(batch) > 1 && rolledBack(err) {
		for i := range ins {
			var one []R
			if one, err = b.safeDecide(ins[i : i+1]); err != nil {
				one = []R{b.failed(err)}
				if !rolledBack(err) {
					// Unavailable or out of time: the rest would only fail
					// again, a deadline at a time.
					for j := i; j < len(batch); j++ {
						results[j] = b.failed(err)
					}
					break
				}
			}
			results[i] = one[0]
		}
	} else if err != nil {
		for i := range results {
			results[i] = b.failed(err)
		}
	}
	b.mu.Lock()
	for i, call := range batch {
		call.result = results[i]
		call.done = true
		user := b.user(call.in)
		if b.inFlight[user]--; b.inFlight[user] == 0 {
			delete(b.inFlight, user)
		}
	}
	b.mu.Unlock()
	for _, call := range batch {
		if call != self {
			signal(call.wake)
		}
	}
}

// safeDecide is decide with a panic turned into an error for each of ins:
// a panic on a leader's goroutine would otherwise leave the batch's other
// callers waiting for ever, their users marked in a statement and the
// leader's place taken. Where it panicked is unknown, so the statement may
// have committed: the error is not one to run it again. It always returns
// a result per call.
func (b *batcher[C, R]) safeDecide(ins []C) (results []R, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = verity.Errorf(verity.EINTERNAL, "%s: deciding %d calls panicked: %v", b.op, len(ins), r)
		}
		if n := len(results); n != len(ins) {
			results = make([]R, len(ins))
			if err == nil {
				err = verity.Errorf(verity.EINTERNAL, "%s: %d results for %d calls", b.op, n, len(ins))
			}
		}
	}()
	return b.decide(ins)
}

// rolledBack reports whether err is PostgreSQL's own error for a statement
// that it aborted, so that nothing the statement did committed and its
// calls may run again, and running them again may succeed: not a
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
var errSharedCheckFailed = errors.New("shared statement refused")

// signal wakes the goroutine waiting on ch, if it is not awake already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
