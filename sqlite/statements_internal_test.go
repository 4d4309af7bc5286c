package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// TestStatementsPerWrite pins how many statements the single writer runs
// for the hot paths' store calls (BEGIN, PRAGMA data_version and COMMIT,
// shared by a batch, not counted). Each statement is CPU on the one writer goroutine that every
// write waits for: raise a number only with a reason.
func TestStatementsPerWrite(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, u := openWithUser(t, now)
	settings := verity.DefaultSettings()
	start := func(at time.Time) verity.PINStart {
		return verity.PINStart{ServiceID: svc.ID,
			PIN:             verity.PIN{ID: uuid.NewString(), UserID: u.ID, Hash: []byte("h"), CreatedAt: at, ExpiresAt: at.Add(time.Hour)},
			SendWindowStart: at.Add(-settings.SendWindow()), MaxSends: 100, ResendNotBefore: at,
			FailureWindowStart: at.Add(-settings.FailureWindow()), FailureLimit: 100}
	}
	check := func(v verity.PINVerdict) verity.PINCheck {
		return verity.PINCheck{ServiceID: svc.ID, UserID: u.ID, Now: now, MaxAttempts: 100,
			FailureWindowStart: now.Add(-time.Hour), FailureLimit: 100,
			Judge: func(*verity.User, *verity.PIN) verity.PINVerdict { return v }}
	}
	count := func(name string, want int64, op func() error) {
		t.Helper()
		before := db.q.statements.Load()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := db.q.statements.Load() - before; got != want {
			t.Errorf("%s ran %d statements on the writer, want %d", name, got, want)
		}
	}
	startOK := func(at time.Time) func() error {
		return func() error {
			st, err := db.StartPIN(ctx, start(at))
			if err == nil && !st.Started {
				t.Errorf("StartPIN at %v refused: %+v", at, st.Seen)
			}
			return err
		}
	}
	checked := func(v verity.PINVerdict, applied bool) func() error {
		return func() error {
			out, err := db.CheckPIN(ctx, check(v))
			if err == nil && out.Applied != applied {
				t.Errorf("CheckPIN(%d) applied = %v, want %v", v, out.Applied, applied)
			}
			return err
		}
	}

	// The one read and the INSERT, its only change, which needs no
	// savepoint: last_method stays "", which means "not the app" as "sms"
	// does.
	count("a user's first start", 2, startOK(now))
	// Nothing is old enough to prune.
	count("a second start", 2, startOK(now.Add(time.Second)))
	// The read, then SAVEPOINT, INSERT, DELETE of the sends the window left
	// behind, RELEASE.
	count("a start with history to prune", 5, startOK(now.Add(settings.SendWindow()+time.Minute)))
	// The start left the user and its PIN in the PIN cache: checks read
	// nothing, and keep the cache right with what they write.
	count("a check that changes nothing", 0, checked(verity.LeaveAsIs, false))
	// SAVEPOINT, the PIN's and the user's UPDATE, RELEASE.
	count("a wrong code", 4, checked(verity.CountIt, true))
	// The app's read: the user has none, which the cache then knows.
	count("a check sent to the app", 1, checked(verity.ToTheApp, false))
	count("the next check sent to the app", 0, checked(verity.ToTheApp, false))
	// One conditional UPDATE; no savepoint.
	count("a right code", 1, checked(verity.ConsumeIt, true))
	// Any other write empties the cache: the next check reads, once.
	count("another write", 1, func() error { return db.AbortPIN(ctx, uuid.NewString(), uuid.NewString()) })
	count("a check after another write", 1, checked(verity.LeaveAsIs, false))
	count("the check after that one", 0, checked(verity.LeaveAsIs, false))
}

// TestHotReadsMaterialiseNothing pins the plans of the start's and the
// check's reads: no temporary table per call, no table scanned. Joined in the wrong place,
// the failure budget once turned the start's per-user aggregate from a
// co-routine into a table SQLite built and dropped on every start.
func TestHotReadsMaterialiseNothing(t *testing.T) {
	db, _, _ := openWithUser(t, time.Now())
	for name, read := range map[string]struct {
		query string
		args  []any
	}{
		"startPINQuery":    {startPINQuery, []any{"user", "service", 1}},
		"userWithPINQuery": {userWithPINQuery, []any{"user", "service"}},
	} {
		plan := queryPlan(t, db, read.query, read.args...)
		for _, step := range plan {
			// SCAN w reads the start's one-row aggregate, run as a co-routine.
			scan := strings.HasPrefix(step, "SCAN ") && step != "SCAN w"
			if scan || strings.Contains(step, "MATERIALIZE") || strings.Contains(step, "TEMP B-TREE") {
				t.Errorf("%s's plan %q: %q builds a temporary table or scans a table", name, plan, step)
			}
		}
	}
}

// queryPlan returns the steps of query's plan on the writer's connection.
func queryPlan(t *testing.T, db *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.writer.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestPINWritesFindTheirRowByItsUser: pins have no index on their ids, so
// every statement that names a PIN by its id must reach the row through
// its user's index or its seq. A plan that scans the pins table reads every
// user's PINs, on every check.
func TestPINWritesFindTheirRowByItsUser(t *testing.T) {
	db, _, _ := openWithUser(t, time.Now())
	for name, w := range map[string]struct {
		query string
		args  []any
	}{
		"consumePINStatement": {consumePINStatement, []any{1, "pin", 10, "user", 5, 1, nil}},
		"countTryStatement":   {countTryStatement, []any{"pin", "user", 1, 10}},
		"AbortPIN":            {abortPINStatement, []any{"user", "pin"}},
		"ExpirePIN":           {expirePINStatement, []any{"user", "pin", 1}},
	} {
		plan := queryPlan(t, db, w.query, w.args...)
		if len(plan) == 0 {
			t.Fatalf("%s has no plan", name)
		}
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN pins") {
				t.Errorf("%s's plan %q scans the pins table", name, plan)
			}
		}
		if !strings.HasPrefix(plan[0], "SEARCH pins USING") {
			t.Errorf("%s's plan %q does not start by finding one user's PINs", name, plan)
		}
	}
}
