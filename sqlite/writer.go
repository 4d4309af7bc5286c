package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// Group commit. SQLite has one writer, and with synchronous=FULL every commit
// waits for an fsync, so committing each state change on its own caps the
// whole server at one fsync per request. Instead one goroutine owns the
// writer connection: it takes every write waiting in the queue, runs each in
// its own SAVEPOINT inside one transaction (so each succeeds or fails alone,
// exactly as if it ran by itself, one after the other), commits once, and only
// then answers each caller. A write is acknowledged only after the fsync that
// made it durable; under load one fsync covers many writes.

// maxBatch bounds how many writes share one commit, and so the latency one
// slow batch adds to the writes queued behind it.
const maxBatch = 128

// errRollback, returned by a write function, undoes that write's changes
// without reporting an error to its caller: a conditional change that found
// its condition false halfway.
var errRollback = errors.New("roll back this write")

// errClosed answers writes submitted after Close.
var errClosed = errors.New("sqlite: database is closed")

type writeOp struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error
}

// writeQueue runs writes in group commits on one connection.
type writeQueue struct {
	db     *sql.DB
	ops    chan *writeOp
	mu     sync.RWMutex // guards closed against sends racing Close
	closed bool
	wg     sync.WaitGroup
}

func newWriteQueue(db *sql.DB) *writeQueue {
	q := &writeQueue{db: db, ops: make(chan *writeOp, 4*maxBatch)}
	q.wg.Add(1)
	go q.loop()
	return q
}

// write runs fn in a transaction shared with other writes and returns once
// its effects are committed (or undone).
func (q *writeQueue) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return errClosed
	}
	select {
	case q.ops <- op:
	case <-ctx.Done():
		q.mu.RUnlock()
		return ctx.Err()
	}
	q.mu.RUnlock()
	// Once queued, wait for the outcome even if ctx ends: the write may
	// already be committed, and the caller must not think otherwise.
	return <-op.done
}

func (q *writeQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ops)
	}
	q.mu.Unlock()
	q.wg.Wait()
}

func (q *writeQueue) loop() {
	defer q.wg.Done()
	batch := make([]*writeOp, 0, maxBatch)
	for op := range q.ops {
		batch = append(batch[:0], op)
	drain:
		for len(batch) < maxBatch {
			select {
			case next, ok := <-q.ops:
				if !ok {
					break drain
				}
				batch = append(batch, next)
			default:
				break drain
			}
		}
		q.commit(batch)
	}
}

// commit runs one batch in one transaction.
func (q *writeQueue) commit(batch []*writeOp) {
	results := make([]error, len(batch))
	fail := func(err error) {
		for _, op := range batch {
			op.done <- err
		}
	}
	ctx := context.Background() // a caller's cancellation must not abort the others' commit
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err // not started: nothing to undo
			continue
		}
		results[i] = runInSavepoint(ctx, tx, op.fn)
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, op := range batch {
		op.done <- results[i]
	}
}

// runInSavepoint runs fn so that an error (or errRollback) undoes exactly
// fn's changes and nothing else in the batch.
func runInSavepoint(ctx context.Context, tx *sql.Tx, fn func(*sql.Tx) error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
		return err
	}
	err := fn(tx)
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO w"); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE w"); rerr != nil {
		return errors.Join(err, rerr)
	}
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// cmpOr returns the first non-nil error.
func cmpOr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
