package sqlite

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Group commit. SQLite has one writer, and with synchronous=FULL every commit
// waits for an fsync, so committing each state change on its own caps the
// whole server at one fsync per request. Instead one goroutine owns a
// dedicated writer connection: it takes every write waiting in the queue,
// runs each in its own SAVEPOINT inside one transaction (so each succeeds or
// fails alone, exactly as if it ran by itself, one after the other), commits
// once, and only then answers each caller. A write is acknowledged only after
// the fsync that made it durable; under load one fsync covers many writes.

// maxBatch bounds how many writes share one commit, and so the latency one
// slow batch adds to the writes queued behind it.
const maxBatch = 128

// lingerRounds bounds how often the writer yields the processor before a
// commit while writes keep arriving: request goroutines that are already
// running then queue their writes in time to share the commit (one fsync,
// and one write of each hot page, for all of them). It stops at the first
// yield that brings no new write. Measured with the check benchmark: 15-20 %
// less server CPU per check.
//
// It yields once even for a lone write with nothing queued behind it. Under
// load that write is most often the first of the requests the last commit
// answered to come back, and the rest are running: committed alone, it was
// three of every four commits in the check benchmark (2,200-3,300 commits a
// second; 850-1,100 with this yield, about 100 of them alone). On a quiet
// server nothing else is ready to run, the yield returns at once and the
// write commits.
const lingerRounds = 4

// errRollback, returned by a write function, undoes that write's changes
// without reporting an error to its caller: a conditional change that found
// its condition false halfway.
var errRollback = errors.New("roll back this write")

// errBatchEnded is why a batch failed when the write that ended its
// transaction reported no error of its own.
var errBatchEnded = errors.New("a write ended the transaction")

// errClosed answers writes submitted after Close.
var errClosed = errors.New("sqlite: database is closed")

// wtx is what a write function runs its statements on: the writer
// connection inside the current batch's transaction. Statements are
// prepared once on that connection and reused, so the hot path never parses.
// They run to completion whatever the caller's context: a statement
// interrupted halfway could abort the whole batch's transaction.
type wtx struct {
	q *writeQueue
}

// Exec runs a write statement.
func (w *wtx) Exec(query string, args ...any) (rawResult, error) {
	w.q.statements.Add(1)
	return w.q.conn.exec(query, args...)
}

// QueryRow runs a one-row read; an error surfaces through Scan.
func (w *wtx) QueryRow(query string, args ...any) *rawRow {
	w.q.statements.Add(1)
	return w.q.conn.queryRow(query, args...)
}

type writeOp struct {
	ctx  context.Context
	fn   func(tx *wtx) error
	done chan error
	// single marks fn as leaving no partial change when it fails: it makes
	// at most one change statement (SQLite undoes a failed statement by
	// itself), or wraps several in wtx.atomically. It then needs no
	// savepoint around the whole of it.
	single bool
	// keeps names the one user whose rows fn may change, when fn keeps
	// the PIN cache right for that user itself (see pinCache); the queue
	// drops the user's entry if fn fails. Empty: fn may change anything,
	// and the queue clears the whole cache after it.
	keeps string
	// between, when set, runs instead of fn on the writer connection with
	// no transaction open, after the batch before it has committed and
	// before the next begins: for what must not overlap a write. It must
	// not submit to the queue itself, which would wait for it forever,
	// and must not change rows, which the PIN cache would not see.
	between func(conn *rawConn) error
}

// writeQueue runs writes in group commits on one connection.
type writeQueue struct {
	conn *rawConn // the loop goroutine's only; it closes it when the queue closes
	ops  chan *writeOp
	// pins and dataVersion are the loop goroutine's only (write functions
	// run on it): the PIN cache, and the writer connection's PRAGMA
	// data_version when the cache was last known to match the database.
	pins        *pinCache
	dataVersion int64

	// statements counts what writes ran on wtx (not BEGIN and COMMIT):
	// tests pin each operation's budget with it. batches counts the
	// transactions begun.
	statements atomic.Int64
	batches    atomic.Int64

	// yield lets the request goroutines run before a commit (see
	// lingerRounds): runtime.Gosched, or a test's stand-in.
	yield func()

	mu       sync.RWMutex // guards closed against sends racing close
	closed   bool
	refusal  error // what a write to a closed queue gets: errClosed, or newRefusingQueue's
	wg       sync.WaitGroup
	closeErr error // closing conn, once the loop is done
}

// newWriteQueue starts the queue's goroutine on conn, which it then owns.
func newWriteQueue(conn *rawConn) *writeQueue {
	q := &writeQueue{conn: conn, ops: make(chan *writeOp, 4*maxBatch), pins: newPINCache(pinCacheLimit, pinCacheRingBytes), yield: runtime.Gosched}
	q.wg.Add(1)
	go q.loop()
	return q
}

// newRefusingQueue returns a queue without a connection that answers every
// write with err: a store opened read-only has no writer.
func newRefusingQueue(err error) *writeQueue {
	return &writeQueue{closed: true, refusal: err}
}

// write runs fn in a transaction shared with other writes and returns once
// its effects are committed (or undone).
func (q *writeQueue) write(ctx context.Context, fn func(tx *wtx) error) error {
	return q.submit(writeOp{ctx: ctx, fn: fn})
}

// writeStatement is write for a fn that makes at most one change
// statement, or wraps several in wtx.atomically: it costs no savepoint
// statements when it changes nothing or only one row.
func (q *writeQueue) writeStatement(ctx context.Context, fn func(tx *wtx) error) error {
	return q.submit(writeOp{ctx: ctx, fn: fn, single: true})
}

// writeKeeping is write for a fn that changes only the rows of user
// userID and keeps the PIN cache right for that user (see pinCache).
func (q *writeQueue) writeKeeping(ctx context.Context, userID string, fn func(tx *wtx) error) error {
	return q.submit(writeOp{ctx: ctx, fn: fn, keeps: userID})
}

// writeStatementKeeping is writeStatement and writeKeeping in one.
func (q *writeQueue) writeStatementKeeping(ctx context.Context, userID string, fn func(tx *wtx) error) error {
	return q.submit(writeOp{ctx: ctx, fn: fn, single: true, keeps: userID})
}

// runBetween runs fn on the writer connection between two batches, with no
// transaction open and no write running, and returns its error.
func (q *writeQueue) runBetween(ctx context.Context, fn func(conn *rawConn) error) error {
	return q.submit(writeOp{ctx: ctx, between: fn})
}

// writeOps recycles writes and their done channels: a check is one write,
// and the two were about a twentieth of the bytes it allocated. An op
// returns here once its submitter has its one answer, after which the
// writer no longer reads it.
var writeOps = sync.Pool{New: func() any { return &writeOp{done: make(chan error, 1)} }}

// submit queues a write made as spec says and waits for its outcome.
func (q *writeQueue) submit(spec writeOp) error {
	op := writeOps.Get().(*writeOp)
	done := op.done
	*op = spec
	op.done = done
	recycle := func() {
		*op = writeOp{done: done} // nothing of this write stays reachable
		writeOps.Put(op)
	}
	if err := op.ctx.Err(); err != nil {
		recycle() // over already: not worth a batch (Err makes no Done channel)
		return err
	}
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		recycle()
		return cmp.Or(q.refusal, errClosed)
	}
	select {
	case q.ops <- op:
	default:
		// The queue is full. Only now wait on ctx too: a context's Done
		// channel is made when first asked for, one more allocation per
		// write that the common case does without.
		select {
		case q.ops <- op:
		case <-op.ctx.Done():
			q.mu.RUnlock()
			recycle()
			return op.ctx.Err()
		}
	}
	q.mu.RUnlock()
	// Once queued, wait for the outcome even if ctx ends: the write may
	// already be committed, and the caller must not think otherwise.
	err := <-done
	recycle()
	return err
}

// close stops the queue once the writes queued have run, and closes its
// connection.
func (q *writeQueue) close() error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ops)
	}
	q.mu.Unlock()
	q.wg.Wait()
	return q.closeErr
}

func (q *writeQueue) loop() {
	defer q.wg.Done()
	defer func() { q.closeErr = q.conn.close() }()
	defer q.pins.close() // after the last write: the loop owns the cache
	batch := make([]*writeOp, 0, maxBatch)
	for op := range q.ops {
		if op.between != nil {
			q.runBetweenOp(op)
			continue
		}
		var after *writeOp // a between op that ended the batch
		batch = append(batch[:0], op)
		for range lingerRounds {
			queued := len(q.ops)
			if queued >= maxBatch-1 {
				break
			}
			q.yield()
			if len(q.ops) == queued {
				break
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case next, ok := <-q.ops:
				if !ok {
					break drain
				}
				if next.between != nil {
					after = next
					break drain
				}
				batch = append(batch, next)
			default:
				break drain
			}
		}
		q.commit(batch)
		if after != nil {
			q.runBetweenOp(after)
		}
	}
}

// runBetweenOp runs a between op.
func (q *writeQueue) runBetweenOp(op *writeOp) {
	if err := op.ctx.Err(); err != nil {
		op.done <- err
		return
	}
	op.done <- op.between(q.conn)
}

// commit runs one batch in one transaction.
func (q *writeQueue) commit(batch []*writeOp) {
	fail := func(err error) {
		for _, op := range batch {
			op.done <- err
		}
	}
	q.batches.Add(1)
	if _, err := q.conn.exec("BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	if err := q.checkDataVersion(); err != nil {
		q.conn.exec("ROLLBACK")
		q.pins.clear() // whether the database changed is unknown
		fail(fmt.Errorf("data_version: %w", err))
		return
	}
	results := make([]error, len(batch))
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err // not started: nothing to undo
			continue
		}
		results[i] = q.runInSavepoint(op)
		if !q.conn.inTransaction() {
			// SQLite rolled the batch back (or a write ended it): the
			// writes before this one are undone, and the ones after must
			// not run, each committing alone, while their callers hear of
			// a failed batch.
			q.pins.clear()
			fail(fmt.Errorf("the batch's transaction ended before its commit: %w", cmpOr(results[i], errBatchEnded)))
			return
		}
		switch {
		case op.keeps == "":
			q.pins.clear()
		case results[i] != nil:
			q.pins.drop(op.keeps)
		}
	}
	if _, err := q.conn.exec("COMMIT"); err != nil {
		q.conn.exec("ROLLBACK") // a failed COMMIT may leave the transaction open
		q.pins.clear()          // it held the undone changes
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	for i, op := range batch {
		op.done <- results[i]
	}
}

// checkDataVersion clears the PIN cache if another connection committed
// since the writer last looked. It runs first in each batch's transaction,
// whose IMMEDIATE lock keeps any other commit out until this one ends, so
// what the batch caches is current until the next batch looks again.
func (q *writeQueue) checkDataVersion() error {
	var v int64
	if err := q.conn.queryRow("PRAGMA data_version").Scan(&v); err != nil {
		return err
	}
	if v != q.dataVersion {
		q.pins.clear()
		q.dataVersion = v
	}
	return nil
}

// runInSavepoint runs op so that an error (or errRollback) undoes exactly
// op's changes and nothing else in the batch.
func (q *writeQueue) runInSavepoint(op *writeOp) error {
	tx := &wtx{q: q}
	if op.single {
		// errRollback from a lone statement means it changed nothing.
		if err := op.fn(tx); !errors.Is(err, errRollback) {
			return err
		}
		return nil
	}
	return tx.atomically(func() error { return op.fn(tx) })
}

// atomically runs fn's statements in a savepoint: if fn fails, its changes
// are undone and the batch's other writes stand. errRollback undoes them
// without being an error.
func (w *wtx) atomically(fn func() error) error {
	if _, err := w.Exec("SAVEPOINT w"); err != nil {
		return err
	}
	err := fn()
	if err != nil {
		if _, rerr := w.Exec("ROLLBACK TO w"); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if _, rerr := w.Exec("RELEASE w"); rerr != nil {
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
