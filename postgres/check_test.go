package postgres_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

// openTraced opens a second store on f's database whose statements tracer
// sees, closed when the test ends.
func openTraced(t *testing.T, f *fixture, tracer pgx.QueryTracer) *postgres.DB {
	t.Helper()
	db, err := postgres.OpenTraced(context.Background(), f.url, postgres.Options{}, tracer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// codeHash is a PIN hash under the current scheme's tag with every MAC byte b.
func codeHash(b byte) []byte {
	h := bytes.Repeat([]byte{b}, verity.CodeHashSize)
	h[0] = 2
	return h
}

// hashCheck checks typed against f's user's PIN at now; judge decides
// what the statement did not.
func hashCheck(f *fixture, now time.Time, typed []byte, judge func(*verity.User, *verity.PIN) verity.PINVerdict) verity.PINCheck {
	s := f.service.Settings
	return verity.PINCheck{ServiceID: f.service.ID, UserID: f.user.ID, Judge: judge, CodeHash: typed,
		Now: now, MaxAttempts: s.MaxAttempts, FailureWindowStart: now.Add(-s.FailureWindow()), FailureLimit: s.FailureLimit}
}

// byHash judges as the app does for a user whose latest start was an SMS PIN.
func byHash(typed []byte) func(*verity.User, *verity.PIN) verity.PINVerdict {
	return func(_ *verity.User, p *verity.PIN) verity.PINVerdict {
		if p.ConsumedAt != nil {
			return verity.LeaveAsIs
		}
		if bytes.Equal(p.Hash, typed) {
			return verity.ConsumeIt
		}
		return verity.CountIt
	}
}

// TestCheckByHashIsOneStatement: with the code's hash, a check of a PIN is
// one statement, one round trip, right code or wrong; without it, or for a
// PIN hashed under the earlier scheme, it is a read and a write.
func TestCheckByHashIsOneStatement(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	var rec sqlRecorder
	db := openTraced(t, f, &rec)

	check := func(what string, c verity.PINCheck, verdict verity.PINVerdict, statements int64) {
		t.Helper()
		rec.take()
		out, err := db.CheckPIN(ctx, c)
		if err != nil || out.Verdict != verdict || !out.Applied {
			t.Fatalf("%s: CheckPIN = %+v, %v; want verdict %d applied", what, out, err, verdict)
		}
		if got := int64(len(rec.take())); got != statements {
			t.Fatalf("%s: %d statements, want %d", what, got, statements)
		}
	}
	now := t0.Add(time.Second)
	right, wrong := codeHash(7), codeHash(8)
	p := start(f.user, "p1", t0)
	p.PIN.Hash = right
	if _, err := db.StartPIN(ctx, p); err != nil {
		t.Fatal(err)
	}
	check("a wrong code", hashCheck(f, now, wrong, byHash(wrong)), verity.CountIt, 1)
	check("the right code", hashCheck(f, now, right, byHash(right)), verity.ConsumeIt, 1)

	p = start(f.user, "p2", t0.Add(time.Minute))
	p.PIN.Hash = right
	if _, err := db.StartPIN(ctx, p); err != nil {
		t.Fatal(err)
	}
	withoutHash := hashCheck(f, now, nil, byHash(wrong))
	check("a wrong code without its hash", withoutHash, verity.CountIt, 2)

	p = start(f.user, "p3", t0.Add(2*time.Minute))
	p.PIN.Hash = right[1:] // the earlier scheme: the MAC alone
	if _, err := db.StartPIN(ctx, p); err != nil {
		t.Fatal(err)
	}
	check("the right code of an untagged PIN", hashCheck(f, now, right, byHash(right[1:])), verity.ConsumeIt, 2)
}

// TestCheckByHashRefusesAJudgeThatDisagrees: the statement's comparison and
// the judge's must agree; a store that finds them apart reports an internal
// error rather than the judge's answer, which its write did not follow. The
// write, committed with the read, stands.
func TestCheckByHashRefusesAJudgeThatDisagrees(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	p := start(f.user, "p1", t0)
	p.PIN.Hash = codeHash(7)
	if _, err := f.db.StartPIN(ctx, p); err != nil {
		t.Fatal(err)
	}
	c := hashCheck(f, t0.Add(time.Second), codeHash(8), func(*verity.User, *verity.PIN) verity.PINVerdict {
		return verity.ConsumeIt
	})
	_, err := f.db.CheckPIN(ctx, c)
	if got := verity.ErrorCode(err); got != verity.EINTERNAL {
		t.Fatalf("CheckPIN with a judge that finds a wrong code right: %v (code %q), want %q", err, got, verity.EINTERNAL)
	}
	pending, err := f.db.PendingPIN(ctx, f.user.ID)
	if err != nil || pending.Attempts != 1 || pending.ConsumedAt != nil {
		t.Fatalf("the PIN after the disagreement = %+v, %v; want the wrong try counted, not used", pending, err)
	}
}

// TestCheckByHashRechecksWhatAConcurrentWriteChanged: a check whose
// statement read the PIN and the user and then had to wait for another
// transaction's write of either row judges the committed row again before
// it writes. Another transaction changes a row and holds it while checks
// of the PIN start and block on it; once it commits, they must find the
// user locked out, the PIN's tries spent, or the PIN used, and write
// nothing.
func TestCheckByHashRechecksWhatAConcurrentWriteChanged(t *testing.T) {
	const waiting = 4
	for _, tc := range []struct {
		name   string
		change string // run, uncommitted, while the checks start; $1 is the user, $2 the PIN
		right  bool   // the checks send the right code
		// What the rows hold after the checks.
		attempts, failures int
		used               bool
	}{
		{"the user reached its failure limit",
			`UPDATE users SET failure_count = 10, failure_window_start = now() WHERE id = $1 AND EXISTS (SELECT 1 FROM pins WHERE id = $2)`,
			false, 0, 10, false},
		{"the PIN's tries ran out", `UPDATE pins SET attempts = 5 WHERE id = $2 AND user_id = $1`, false, 5, 0, false},
		{"the PIN was used", `UPDATE pins SET consumed_at = now() WHERE id = $2 AND user_id = $1`, true, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, postgres.Options{})
			// The checks' clock is the database's, so that now() above
			// opens a failure window that is still open for them.
			now := time.Now()
			right, wrong := codeHash(7), codeHash(8)
			p := start(f.user, "p1", now)
			p.PIN.Hash = right
			if _, err := f.db.StartPIN(ctx, p); err != nil {
				t.Fatal(err)
			}
			typed := wrong
			if tc.right {
				typed = right
			}

			conn := mustConnect(t, f.url)
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if tag, err := tx.Exec(ctx, tc.change, f.user.ID, "p1"); err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("the change: %v, %v", tag, err)
			}
			type result struct {
				out verity.PINChecked
				err error
			}
			results := make(chan result, waiting)
			for range waiting {
				// A store each, as nodes: one store runs a user's
				// checks one statement after another.
				node := mustOpen(t, f.url, postgres.Options{})
				go func() {
					out, err := node.CheckPIN(ctx, hashCheck(f, now, typed, byHash(typed)))
					results <- result{out, err}
				}()
			}
			waitForLockWaits(t, f.url, waiting)
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			for range waiting {
				if r := <-results; r.err != nil || r.out.Applied {
					t.Fatalf("a check that waited for the change = %+v, %v; want nothing applied", r.out, r.err)
				}
			}
			var attempts, failures int
			var used bool
			if err := conn.QueryRow(ctx, `SELECT p.attempts, u.failure_count, p.consumed_at IS NOT NULL
				FROM pins p JOIN users u ON u.id = p.user_id WHERE p.id = 'p1'`).Scan(&attempts, &failures, &used); err != nil {
				t.Fatal(err)
			}
			if attempts != tc.attempts || failures != tc.failures || used != tc.used {
				t.Fatalf("after the checks: PIN attempts %d, user failures %d, PIN used %v; want %d, %d, %v",
					attempts, failures, used, tc.attempts, tc.failures, tc.used)
			}
		})
	}
}

// waitForLockWaits waits until n sessions of the database at url wait for
// a lock.
func waitForLockWaits(t *testing.T, url string, n int) {
	t.Helper()
	ctx := context.Background()
	conn := mustConnect(t, url)
	defer conn.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for a lock after 10 s, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sqlRecorder records the text of every statement a pool sends, batched or
// not: what a store call costs PostgreSQL, and which statements it sends.
type sqlRecorder struct {
	mu   sync.Mutex
	sqls []string
}

func (r *sqlRecorder) record(sql string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sqls = append(r.sqls, sql)
}

// take returns the statements recorded since the last call.
func (r *sqlRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	sqls := r.sqls
	r.sqls = nil
	return sqls
}

func (r *sqlRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.record(d.SQL)
	return ctx
}
func (r *sqlRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *sqlRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *sqlRecorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.record(d.SQL)
}
func (r *sqlRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestStartPrunesOnlyWhatItFinds: a start sends its DELETE of old history
// only when its read found history before the send window, and then the
// old rows go.
func TestStartPrunesOnlyWhatItFinds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	var rec sqlRecorder
	db := openTraced(t, f, &rec)
	deletes := func(what string, p verity.PINStart, want int) {
		t.Helper()
		rec.take()
		if st, err := db.StartPIN(ctx, p); err != nil || !st.Started {
			t.Fatalf("%s: StartPIN = %+v, %v", what, st, err)
		}
		n := 0
		for _, sql := range rec.take() {
			if strings.Contains(sql, "DELETE FROM pins") {
				n++
			}
		}
		if n != want {
			t.Fatalf("%s sent %d DELETEs of old history, want %d", what, n, want)
		}
	}
	// start's send window is the minute before the start.
	deletes("a user's first start", start(f.user, "p1", t0), 0)
	deletes("a start with the first inside its window", start(f.user, "p2", t0.Add(30*time.Second)), 0)
	deletes("a start after both left the window", start(f.user, "p3", t0.Add(2*time.Minute)), 1)
	// What is left: deleting everything says how much that was.
	if rows, err := db.DeletePINsBefore(ctx, t0.Add(time.Hour)); err != nil || rows != 1 {
		t.Fatalf("the user has %d PIN rows after the pruning start (%v), want its own alone", rows, err)
	}
}
