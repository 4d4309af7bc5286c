package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// failureRows counts the rows of user_failures.
func failureRows(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.writer.QueryRow(`SELECT count(*) FROM user_failures`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMigrationMovesFailureBudgets upgrades a database of schema 2, whose
// users carry their failure budget in their rows, and downgrades it again,
// through schema 3, which keyed the budgets by the users' text ids: every
// budget survives each step and a user without one gets none.
func TestMigrationMovesFailureBudgets(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, p := openAtSchema(t, 2)
	acct, svc := uuid.NewString(), uuid.NewString()
	failed, spotless := uuid.NewString(), uuid.NewString()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO accounts (id, username, secret_hash, created_at) VALUES (?, 'acme', x'01', 1)`, []any{acct}},
		{`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES (?, ?, 'Acme', 'x', '{}', 1)`, []any{svc, acct}},
		{`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at, failure_count, failure_window_start, last_method)
			VALUES (?, ?, 'alice', '+3725555555', 'MOBILE', 1, 3, ?, 'totp')`, []any{failed, svc, micros(now)}},
		{`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at)
			VALUES (?, ?, 'bob', '+3725555556', 'MOBILE', 1)`, []any{spotless, svc}},
	} {
		if _, err := db.writer.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	budget := func(id string) (int, time.Time) {
		t.Helper()
		u, err := db.User(ctx, svc, id)
		if err != nil {
			t.Fatal(err)
		}
		return u.FailureCount, u.FailureWindowStart
	}
	if n, since := budget(failed); n != 3 || !since.Equal(now) {
		t.Fatalf("after the upgrade alice has %d failures since %v; want 3 since %v", n, since, now)
	}
	if n, since := budget(spotless); n != 0 || !since.IsZero() {
		t.Fatalf("after the upgrade bob has %d failures since %v; want none", n, since)
	}
	if n := failureRows(t, db); n != 1 {
		t.Fatalf("user_failures holds %d rows, want alice's alone", n)
	}

	// Schema 3 keyed the budgets by the users' text ids (00004 by their seq).
	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	var (
		id    string
		count int
		since int64
	)
	if err := db.writer.QueryRow(`SELECT user_id, failure_count, window_start FROM user_failures`).
		Scan(&id, &count, &since); err != nil {
		t.Fatal(err)
	}
	if id != failed || count != 3 || since != micros(now) {
		t.Fatalf("at schema 3 user_failures holds (%s, %d, %d), want alice's (%s, 3, %d)", id, count, since, failed, micros(now))
	}

	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][2]int64{failed: {3, micros(now)}, spotless: {0, 0}} {
		var got [2]int64
		if err := db.writer.QueryRow(`SELECT failure_count, failure_window_start FROM users WHERE id = ?`, id).
			Scan(&got[0], &got[1]); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("after the downgrade user %s has (failures, since) %v, want %v", id, got, want)
		}
	}
}

// TestFailureBudgetsLeaveWithTheirUsers pins that user_failures holds only
// what counts: the janitor drops budgets whose window began before its
// cutoff, and deleting a user deletes its budget.
func TestFailureBudgetsLeaveWithTheirUsers(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, u := openWithUser(t, now)
	other := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: "bob", Phone: "+3725555556",
		PhoneType: "MOBILE", CreatedAt: now}
	if err := db.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}
	fail := func(userID string, at time.Time) {
		t.Helper()
		ok, err := db.CountFailedTry(ctx, verity.FailedTry{UserID: userID, Now: at,
			FailureWindowStart: at.Add(-time.Hour), FailureLimit: 10})
		if err != nil || !ok {
			t.Fatalf("CountFailedTry = %v, %v", ok, err)
		}
	}
	fail(u.ID, now)
	fail(other.ID, now.Add(time.Minute))
	if n := failureRows(t, db); n != 2 {
		t.Fatalf("user_failures holds %d rows, want 2", n)
	}

	// The janitor's cutoff falls between the two windows' starts.
	if _, err := db.DeletePINsBefore(ctx, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := failureRows(t, db); n != 1 {
		t.Fatalf("after the janitor user_failures holds %d rows, want bob's alone", n)
	}
	got, err := db.User(ctx, svc.ID, u.ID)
	if err != nil || got.FailureCount != 0 || !got.FailureWindowStart.IsZero() {
		t.Fatalf("alice after the janitor = %+v, %v; want no failures", got, err)
	}
	// Her next failure opens a window, as a lapsed one would have.
	fail(u.ID, now.Add(2*time.Hour))
	got, err = db.User(ctx, svc.ID, u.ID)
	if err != nil || got.FailureCount != 1 || !got.FailureWindowStart.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("alice after a new failure = %+v, %v; want 1 since %v", got, err, now.Add(2*time.Hour))
	}

	if err := db.DeleteUser(ctx, svc.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	if n := failureRows(t, db); n != 1 {
		t.Fatalf("after deleting bob user_failures holds %d rows, want alice's alone", n)
	}
}

// TestJanitorPrunesFailuresInChunks: pruning walks user_failures a few
// rows per write and still drops every lapsed budget, and only those, on
// both sides of each chunk's edge.
func TestJanitorPrunesFailuresInChunks(t *testing.T) {
	defer func(n int) { pruneChunk = n }(pruneChunk)
	pruneChunk = 2
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, _ := openWithUser(t, now)
	cutoff := now.Add(time.Hour)
	want := map[string]bool{} // user id → budget kept
	for i := range 7 {
		u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: fmt.Sprint("u", i), Phone: "+3725555556",
			PhoneType: "MOBILE", CreatedAt: now}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		at := now // lapsed at the cutoff
		if i%3 == 1 {
			at = cutoff.Add(time.Minute) // still open
		}
		if ok, err := db.CountFailedTry(ctx, verity.FailedTry{UserID: u.ID, Now: at,
			FailureWindowStart: at.Add(-time.Hour), FailureLimit: 10}); err != nil || !ok {
			t.Fatalf("CountFailedTry = %v, %v", ok, err)
		}
		want[u.ID] = i%3 == 1
	}
	if _, err := db.DeletePINsBefore(ctx, cutoff); err != nil {
		t.Fatal(err)
	}
	for id, kept := range want {
		var n int
		if err := db.writer.QueryRow(`SELECT count(*) FROM user_failures JOIN users ON seq = user_seq WHERE id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (n == 1) != kept {
			t.Errorf("user %s: budget kept = %v, want %v", id, n == 1, kept)
		}
	}
}

// TestCheckPINWritesTestTheBudgetThemselves: a check's consume and used
// step test the user's failure budget in their own statements, keyed by the
// seq the check read with the user, whatever its judge decided. A judge
// that ignores a spent budget stands in for one misled by a stale read.
func TestCheckPINWritesTestTheBudgetThemselves(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, u := openWithUser(t, now)
	const limit = 3
	activateApp(t, db, u, now)
	if st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID,
		PIN:             verity.PIN{ID: uuid.NewString(), UserID: u.ID, Hash: []byte("h"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		SendWindowStart: now.Add(-time.Hour), MaxSends: 5, ResendNotBefore: now,
		FailureWindowStart: now.Add(-time.Hour), FailureLimit: limit}); err != nil || !st.Started {
		t.Fatalf("StartPIN = %+v, %v", st, err)
	}
	for range limit {
		if ok, err := db.CountFailedTry(ctx, verity.FailedTry{UserID: u.ID, Now: now,
			FailureWindowStart: now.Add(-time.Hour), FailureLimit: limit}); err != nil || !ok {
			t.Fatalf("CountFailedTry = %v, %v", ok, err)
		}
	}

	check := verity.PINCheck{ServiceID: svc.ID, UserID: u.ID, Now: now, MaxAttempts: 10,
		FailureWindowStart: now.Add(-time.Hour), FailureLimit: limit,
		Judge: func(*verity.User, *verity.PIN) verity.PINVerdict { return verity.ConsumeIt }}
	if out, err := db.CheckPIN(ctx, check); err != nil || out.Applied {
		t.Fatalf("CheckPIN consuming the PIN of a user whose budget is spent = %+v, %v; want not applied", out, err)
	}
	if p, err := db.PendingPIN(ctx, u.ID); err != nil || p.ConsumedAt != nil {
		t.Fatalf("the PIN after the refused consume = %+v, %v; want it pending", p, err)
	}

	check.Judge = func(*verity.User, *verity.PIN) verity.PINVerdict { return verity.ToTheApp }
	check.JudgeApp = func(*verity.User, *verity.Factor) (verity.PINVerdict, int64) { return verity.UseStepIt, 10 }
	if out, err := db.CheckPIN(ctx, check); err != nil || out.Applied {
		t.Fatalf("CheckPIN using a step of a user whose budget is spent = %+v, %v; want not applied", out, err)
	}
	if got, err := db.Factor(ctx, u.ID); err != nil || got.LastStep != 5 {
		t.Fatalf("the app after the refused step = %+v, %v; want last step 5", got, err)
	}
}
