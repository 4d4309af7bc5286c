package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRawConnEmptyFirstArguments binds an empty text and an empty blob as
// the first arguments a fresh connection sees: they need a non-NULL pointer
// from the argument buffer, or SQLite stores NULL.
func TestRawConnEmptyFirstArguments(t *testing.T) {
	c := openTestRawConn(t)
	var text, blob string
	if err := c.queryRow(`SELECT typeof(?), typeof(?)`, "", []byte{}).Scan(&text, &blob); err != nil {
		t.Fatal(err)
	}
	if text != "text" || blob != "blob" {
		t.Fatalf("an empty string and an empty blob bound first arrive as %s and %s", text, blob)
	}
}

// TestRawConnOpenFailure checks that a connection that cannot open is an
// error, with nothing left open.
func TestRawConnOpenFailure(t *testing.T) {
	c, err := openRawConn("file:"+filepath.Join(t.TempDir(), "no such folder", "v.db"), nil)
	if err == nil {
		c.close()
		t.Fatal("opened a database in a folder that does not exist")
	}
	if !strings.Contains(err.Error(), "unable to open") {
		t.Errorf("error %q does not say why", err)
	}
}

// TestBatchEndedEarlyFailsWholeBatch stands in for SQLite rolling back a
// batch's whole transaction on its own (a full disk, an I/O error): three
// writes share a batch, and the second ends the transaction. The first's
// change is undone with it, so all three must fail and the third must not
// run (it would commit alone, while its caller heard of a failure).
func TestBatchEndedEarlyFailsWholeBatch(t *testing.T) {
	ctx := context.Background()
	db, _, _ := openWithUser(t, time.Now())
	// A checkpoint queued between two of the writes would split the batch
	// (seen in CI: the first write then committed alone).
	db.stopCheckpointer()
	if _, err := db.writer.ExecContext(ctx, "CREATE TABLE scratch (name TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	insert := func(name string) func(tx *wtx) error {
		return func(tx *wtx) error {
			_, err := tx.Exec(`INSERT INTO scratch (name) VALUES (?)`, name)
			return err
		}
	}
	ops := []func(tx *wtx) error{
		insert("first"),
		func(tx *wtx) error {
			if err := insert("second")(tx); err != nil {
				return err
			}
			_, err := tx.Exec("ROLLBACK")
			return err
		},
		insert("third"),
	}
	// Hold the writer between two batches until all three are queued, so
	// that they make one batch, in order.
	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- db.q.runBetween(ctx, func(*rawConn) error { close(entered); <-release; return nil })
	}()
	<-entered
	errs := make([]chan error, len(ops))
	for i, op := range ops {
		errs[i] = make(chan error, 1)
		queued := len(db.q.ops)
		go func() { errs[i] <- db.q.write(ctx, op) }()
		for len(db.q.ops) == queued {
			time.Sleep(time.Millisecond)
		}
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if err := <-errs[i]; err == nil {
			t.Errorf("write %d of the batch succeeded, want every write to fail", i+1)
		}
	}
	var n int
	if err := db.writer.QueryRowContext(ctx, `SELECT count(*) FROM scratch`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows committed by a batch that failed, want 0", n)
	}
	// The queue goes on.
	if err := db.q.write(ctx, insert("after")); err != nil {
		t.Fatalf("the next write: %v", err)
	}
}

// TestLoneWriteYieldsBeforeItsCommit: a write that finds no other queued
// yields once before it commits, and the writes queued meanwhile share its
// commit. The stand-in yield plays the request goroutines that run then.
func TestLoneWriteYieldsBeforeItsCommit(t *testing.T) {
	ctx := context.Background()
	db, _, _ := openWithUser(t, time.Now())
	db.stopCheckpointer() // its writes between batches would share the queue
	q := db.q
	noop := func(*wtx) error { return nil }
	const others = 5
	errs := make(chan error, others)
	yields := 0
	// Set before the write below is sent: its receipt orders the loop's
	// read after this.
	q.yield = func() {
		yields++
		if yields > 1 {
			return
		}
		for range others {
			go func() { errs <- q.write(ctx, noop) }()
		}
		// Bounded: if they never queue, the commit count below says so.
		for deadline := time.Now().Add(10 * time.Second); len(q.ops) < others && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	before := q.batches.Load()
	if err := q.write(ctx, noop); err != nil {
		t.Fatal(err)
	}
	if yields == 0 {
		t.Fatal("a lone write committed without yielding first")
	}
	for range others {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := q.batches.Load() - before; n != 1 {
		t.Errorf("the lone write and the %d queued while it yielded took %d commits, want 1", others, n)
	}
}
