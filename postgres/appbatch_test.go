package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

// tracers passes every statement to each of its tracers.
type tracers []pgx.QueryTracer

func (ts tracers) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	for _, t := range ts {
		ctx = t.TraceQueryStart(ctx, conn, d)
	}
	return ctx
}

func (ts tracers) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryEndData) {
	for _, t := range ts {
		t.TraceQueryEnd(ctx, conn, d)
	}
}

// appUsers adds users u2…u<n> to f's service (u1 is f's own) and gives
// each of u1…u<n> an authenticator app, active at step 7.
func appUsers(t *testing.T, f *fixture, n int) {
	t.Helper()
	ctx := context.Background()
	for i, u := range numberedUsers(t, f, n) {
		app := &verity.Factor{ID: uuid.NewString(), UserID: u.ID, Status: verity.FactorPending, KeyID: "k1",
			Secret: make([]byte, 48), Algorithm: "SHA1", Digits: 6, Period: 30, CreatedAt: t0}
		if err := f.db.PutPendingFactor(ctx, app); err != nil {
			t.Fatal(err)
		}
		if ok, err := f.db.ActivateFactor(ctx, verity.FactorActivation{FactorID: app.ID, UserID: u.ID, Step: 7, Now: t0}); err != nil || !ok {
			t.Fatalf("ActivateFactor(u%d) = %v, %v", i, ok, err)
		}
	}
}

// appCheck is a check of user i that the judge leaves to the app, whose
// verdict is v (for step, when it uses one), with a failure budget of
// limit.
func appCheck(f *fixture, i int, v verity.PINVerdict, step int64, limit int) verity.PINCheck {
	now := t0.Add(time.Second)
	return verity.PINCheck{ServiceID: f.service.ID, UserID: fmt.Sprintf("u%d", i),
		Judge:    func(*verity.User, *verity.PIN) verity.PINVerdict { return verity.ToTheApp },
		JudgeApp: func(*verity.User, *verity.Factor) (verity.PINVerdict, int64) { return v, step },
		Now:      now, MaxAttempts: 5, FailureWindowStart: now.Add(-time.Hour), FailureLimit: limit}
}

// once makes c's app judge give v for step the first time, and leave the
// code as it is after that: a check that is refused reads and judges
// again, and a test must know how many writes it sends.
func once(c verity.PINCheck) verity.PINCheck {
	judge, judged := c.JudgeApp, false
	c.JudgeApp = func(u *verity.User, app *verity.Factor) (verity.PINVerdict, int64) {
		if judged {
			return verity.LeaveAsIs, 0
		}
		judged = true
		return judge(u, app)
	}
	return c
}

// appState reads user i's app's last step, its recorded steps and the
// user's failures.
func appState(t *testing.T, conn *pgx.Conn, i int) (lastStep int64, recorded []int64, failures int) {
	t.Helper()
	ctx := context.Background()
	id := fmt.Sprintf("u%d", i)
	if err := conn.QueryRow(ctx, `SELECT f.last_step, u.failure_count FROM factors f JOIN users u ON u.id = f.user_id
		WHERE f.user_id = $1`, id).Scan(&lastStep, &failures); err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(ctx, `SELECT step FROM totp_used_steps WHERE user_id = $1 ORDER BY step`, id)
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return lastStep, recorded, failures
}

// waitQueuedAppWrites waits until n app writes of db wait for a statement.
func waitQueuedAppWrites(t *testing.T, db *postgres.DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); db.QueuedAppWrites() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d app writes queued after 10 s, want %d", db.QueuedAppWrites(), n)
		}
	}
}

// appWritesBehindU1 sends check 0 (u1's) while u1's row is locked
// elsewhere, so that its write leads a statement that waits for the lock,
// queues the others behind it, one at a time in order, and then releases
// the lock. Outcome k is check k's.
func appWritesBehindU1(t *testing.T, f *fixture, db *postgres.DB, checks []verity.PINCheck) []checkOutcome {
	t.Helper()
	release := holdUser(t, f.url, "u1")
	outcomes := make([]checkOutcome, len(checks))
	var wg sync.WaitGroup
	for k, c := range checks {
		wg.Go(func() {
			out, err := db.CheckPIN(context.Background(), c)
			outcomes[k] = checkOutcome{c.UserID, out, err}
		})
		if k == 0 {
			waitForLockWaits(t, f.url, 1)
		} else {
			waitQueuedAppWrites(t, db, k)
		}
	}
	release()
	wg.Wait()
	return outcomes
}

// TestAppWritesQueuedBehindAStatementShareTheNext: authenticator app
// checks' writes that arrive while a statement is in flight share the
// next one, right codes using their steps and wrong ones counting
// failures, each answered for its own user; a locked-out user's use is
// refused in the same statement; a second write of a user already in that
// statement waits for the one after.
func TestAppWritesQueuedBehindAStatementShareTheNext(t *testing.T) {
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, 6)
	rec, reads := &batchRecorder{match: "use_step"}, &batchRecorder{}
	db := openTraced(t, f, tracers{rec, reads})
	db.SetAppWriteBatching(16, 1)
	conn := mustConnect(t, f.url)
	defer conn.Close(context.Background())
	// u6 has used up a budget of 3 failures.
	if _, err := conn.Exec(context.Background(), `UPDATE users SET failure_count = 3, failure_window_start = $1 WHERE id = 'u6'`, t0); err != nil {
		t.Fatal(err)
	}

	checks := []verity.PINCheck{
		appCheck(f, 1, verity.CountIt, 0, 3),
		appCheck(f, 2, verity.UseStepIt, 8, 3),
		appCheck(f, 3, verity.CountIt, 0, 3),
		appCheck(f, 4, verity.UseStepIt, 9, 3),
		once(appCheck(f, 6, verity.UseStepIt, 8, 3)),
		appCheck(f, 5, verity.CountIt, 0, 3),
		appCheck(f, 2, verity.UseStepIt, 9, 3), // u2 again: the next statement
	}
	outcomes := appWritesBehindU1(t, f, db, checks)

	wantApplied := []bool{true, true, true, true, false, true, true}
	for k, o := range outcomes {
		if o.err != nil || o.out.Applied != wantApplied[k] {
			t.Errorf("check %d (%s) = %+v, %v; want applied %v", k, o.user, o.out, o.err, wantApplied[k])
		}
	}
	if sizes := rec.take(); !slices.Equal(sizes, []int{1, 5, 1}) {
		t.Errorf("statements carried %v writes, want [1 5 1]", sizes)
	}
	// Every first read went through the check statement, which the checks
	// share (u6's second, after its refused use, is a read of its own).
	var read int
	for _, n := range reads.take() {
		read += n
	}
	if read != len(checks) {
		t.Errorf("the check statement read for %d app checks, want all %d", read, len(checks))
	}
	type state struct {
		lastStep int64
		recorded []int64
		failures int
	}
	wants := map[int]state{
		1: {7, []int64{7}, 1},
		2: {9, []int64{7, 8, 9}, 0},
		3: {7, []int64{7}, 1},
		4: {9, []int64{7, 9}, 0},
		5: {7, []int64{7}, 1},
		6: {7, []int64{7}, 3},
	}
	for i, want := range wants {
		last, recorded, failures := appState(t, conn, i)
		if last != want.lastStep || !slices.Equal(recorded, want.recorded) || failures != want.failures {
			t.Errorf("u%d: last step %d, recorded %v, failures %d; want %+v", i, last, recorded, failures, want)
		}
	}
}

// TestAppWriteBatchWithARecordedStepRunsEachAlone: a use whose step is
// recorded already (left by an earlier app of the user) aborts the shared
// statement on the unique key; each write then runs alone, that one is not
// applied and not an error, and the others are applied.
func TestAppWriteBatchWithARecordedStepRunsEachAlone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, 4)
	rec := &batchRecorder{match: "use_step"}
	db := openTraced(t, f, rec)
	db.SetAppWriteBatching(16, 1)
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO totp_used_steps (user_id, step, used_at) VALUES ('u3', 8, $1)`, t0); err != nil {
		t.Fatal(err)
	}

	checks := []verity.PINCheck{
		appCheck(f, 1, verity.CountIt, 0, 10),
		appCheck(f, 2, verity.UseStepIt, 8, 10),
		once(appCheck(f, 3, verity.UseStepIt, 8, 10)),
		appCheck(f, 4, verity.CountIt, 0, 10),
	}
	outcomes := appWritesBehindU1(t, f, db, checks)
	for k, o := range outcomes {
		if want := k != 2; o.err != nil || o.out.Applied != want {
			t.Errorf("check %d (%s) = %+v, %v; want applied %v", k, o.user, o.out, o.err, want)
		}
	}
	if sizes := rec.take(); !slices.Equal(sizes, []int{1, 3, 1, 1, 1}) {
		t.Errorf("statements carried %v writes, want [1 3 1 1 1]: 1, then 3, then each alone", sizes)
	}
	var unique bool
	for _, err := range rec.failed {
		var pe *pgconn.PgError
		unique = unique || (errors.As(err, &pe) && pe.Code == "23505")
	}
	if !unique {
		t.Errorf("no statement failed on the unique key: %v", rec.failed)
	}
	if last, recorded, _ := appState(t, conn, 3); last != 7 || !slices.Equal(recorded, []int64{7, 8}) {
		t.Errorf("u3: last step %d, recorded %v; want 7, [7 8]", last, recorded)
	}
	if last, _, _ := appState(t, conn, 2); last != 8 {
		t.Errorf("u2: last step %d, want 8", last)
	}
	for _, i := range []int{1, 4} {
		if _, _, failures := appState(t, conn, i); failures != 1 {
			t.Errorf("u%d: %d failures, want 1", i, failures)
		}
	}
}

// TestConcurrentAppChecksKeepTheirLimits: many users' app checks at once,
// in shared statements, count exactly each user's failure budget of wrong
// codes and let exactly one of each user's concurrent right codes use its
// step.
func TestConcurrentAppChecksKeepTheirLimits(t *testing.T) {
	const users, wrong, right, limit = 8, 25, 10, 10
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, 2*users)
	rec := &batchRecorder{match: "use_step"}
	db := openTraced(t, f, rec)
	if err := db.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	counted := make([]int, 2*users+1)
	used := make([]int, 2*users+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 1; i <= users; i++ {
		for range wrong {
			wg.Go(func() {
				out, err := db.CheckPIN(context.Background(), appCheck(f, i, verity.CountIt, 0, limit))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				if out.Applied {
					counted[i]++
				}
				mu.Unlock()
			})
		}
		for range right {
			wg.Go(func() {
				c := appCheck(f, users+i, verity.UseStepIt, 8, limit)
				c.JudgeApp = func(_ *verity.User, app *verity.Factor) (verity.PINVerdict, int64) {
					if app.LastStep >= 8 {
						return verity.LeaveAsIs, 0 // a replay
					}
					return verity.UseStepIt, 8
				}
				out, err := db.CheckPIN(context.Background(), c)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				if out.Applied {
					used[users+i]++
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	conn := mustConnect(t, f.url)
	defer conn.Close(context.Background())
	for i := 1; i <= users; i++ {
		if _, _, failures := appState(t, conn, i); counted[i] != limit || failures != limit {
			t.Errorf("u%d: %d wrong codes counted, %d failures on record; want %d", i, counted[i], failures, limit)
		}
		if last, recorded, _ := appState(t, conn, users+i); used[users+i] != 1 || last != 8 || !slices.Equal(recorded, []int64{7, 8}) {
			t.Errorf("u%d: step 8 used %d times, last step %d, recorded %v; want once", users+i, used[users+i], last, recorded)
		}
	}
	if sizes := rec.take(); slices.Max(sizes) < 2 {
		t.Errorf("no statement carried more than one write (%v): nothing was shared", sizes)
	}
	if len(rec.failed) > 0 {
		t.Errorf("statements failed: %v", rec.failed)
	}
}

// TestAppWriteStatementPlanFindsRowsByKeyAfterTheTablesGrew: as the check
// statement's (TestCheckStatementPlanFindsRowsByKeyAfterTheTablesGrew), the
// app write statement's plan, made while the tables were small, still
// finds every user and app through its key after they grew a thousandfold.
func TestAppWriteStatementPlanFindsRowsByKeyAfterTheTablesGrew(t *testing.T) {
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, 20)
	planFindsRowsByKeyAfterGrowth(t, f, "app write",
		`PREPARE stmt(text[], text[], bigint[], bool[], timestamptz[], timestamptz[], int[]) AS `+postgres.AppWriteSQL(),
		`(ARRAY['u3', 'u7'], ARRAY['f3', 'f7'], ARRAY[8, 0]::bigint[], ARRAY[true, false], ARRAY[now(), now()],
		ARRAY[now(), now()], ARRAY[5, 5])`,
		`INSERT INTO totp_used_steps (user_id, step, used_at) SELECT 'g' || i, 1, now() FROM generate_series(1, 20000) i`)
}

// TestAppWritesOnTwoNodesKeepEveryLimit: two nodes share app checks'
// writes for the same users while single-statement uses and failures of
// those users run beside them. No statement fails (no deadlock between
// batches, or between a batch and a single statement), each user's step is
// used exactly once, and exactly the failure budget of wrong codes is
// counted, across both nodes.
func TestAppWritesOnTwoNodesKeepEveryLimit(t *testing.T) {
	ctx := context.Background()
	const users, limit = 16, 10 // u1…u8 type wrong codes, u9…u16 a right one
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, users)
	var rec1, rec2 batchRecorder
	rec1.match, rec2.match = "use_step", "use_step"
	nodes := []*postgres.DB{openTraced(t, f, &rec1), openTraced(t, f, &rec2)}
	for _, db := range nodes {
		db.SetAppWriteBatching(8, 2)
		if err := db.Warm(ctx); err != nil {
			t.Fatal(err)
		}
	}
	apps := make(map[int]*verity.Factor)
	for i := users/2 + 1; i <= users; i++ {
		app, err := f.db.Factor(ctx, fmt.Sprintf("u%d", i))
		if err != nil {
			t.Fatal(err)
		}
		apps[i] = app
	}

	// Per wrong-code user: 12 checks on each node and 3 single counts; per
	// right-code user: 6 checks on each node and 2 single uses; shuffled.
	var calls []func() (applied bool, err error)
	for i := 1; i <= users/2; i++ {
		for _, db := range nodes {
			for range 12 {
				calls = append(calls, func() (bool, error) {
					out, err := db.CheckPIN(ctx, appCheck(f, i, verity.CountIt, 0, limit))
					return out.Applied, err
				})
			}
		}
		for k := range 3 {
			calls = append(calls, func() (bool, error) {
				c := appCheck(f, i, verity.CountIt, 0, limit)
				return nodes[k%2].CountFailedTry(ctx, c.AppFailedTry(&verity.User{ID: c.UserID}))
			})
		}
	}
	for i := users/2 + 1; i <= users; i++ {
		for _, db := range nodes {
			for range 6 {
				calls = append(calls, func() (bool, error) {
					c := appCheck(f, i, verity.UseStepIt, 8, limit)
					c.JudgeApp = func(_ *verity.User, app *verity.Factor) (verity.PINVerdict, int64) {
						if app.LastStep >= 8 {
							return verity.LeaveAsIs, 0 // a replay
						}
						return verity.UseStepIt, 8
					}
					out, err := db.CheckPIN(ctx, c)
					return out.Applied, err
				})
			}
		}
		for k := range 2 {
			calls = append(calls, func() (bool, error) {
				c := appCheck(f, i, verity.UseStepIt, 8, limit)
				return nodes[k%2].UseStep(ctx, c.StepUse(apps[i], 8))
			})
		}
	}
	rand.Shuffle(len(calls), func(a, b int) { calls[a], calls[b] = calls[b], calls[a] })

	applied := make([]bool, len(calls))
	var wg sync.WaitGroup
	for k, call := range calls {
		wg.Go(func() {
			ok, err := call()
			if err != nil {
				t.Errorf("call %d: %v", k, err)
			}
			applied[k] = ok
		})
	}
	wg.Wait()
	var wins int
	for _, ok := range applied {
		if ok {
			wins++
		}
	}
	if want := users/2*limit + users/2; wins != want {
		t.Errorf("%d calls applied, want %d: %d failures for each of %d users and one use of step 8 for each of %d",
			wins, want, limit, users/2, users/2)
	}
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	for i := 1; i <= users; i++ {
		last, recorded, failures := appState(t, conn, i)
		wrongCodes := i <= users/2
		if wrongCodes && (failures != limit || last != 7) || !wrongCodes && (failures != 0 || last != 8 || !slices.Equal(recorded, []int64{7, 8})) {
			t.Errorf("u%d: last step %d, recorded %v, failures %d", i, last, recorded, failures)
		}
	}
	for _, rec := range []*batchRecorder{&rec1, &rec2} {
		rec.mu.Lock()
		if len(rec.failed) > 0 {
			t.Errorf("a statement failed: %v", rec.failed)
		}
		rec.mu.Unlock()
		if sizes := rec.take(); slices.Max(sizes) < 2 {
			t.Errorf("a node's statements carried %v writes: nothing was shared", sizes)
		}
	}
}

// TestAppChecksWithoutSharingSendStatementsOfTheirOwn: with
// --pg-check-batch 1 an app check reads and writes with the single
// statements, which cost PostgreSQL less than a shared statement holding
// one call (measured: 660-988 µs of PostgreSQL CPU per app check through
// the shared statements unshared, against 390-409 single).
func TestAppChecksWithoutSharingSendStatementsOfTheirOwn(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	appUsers(t, f, 2)
	shared := &batchRecorder{match: "n)"} // every shared statement's unnest ends WITH ORDINALITY AS c(…, n)
	db, err := postgres.OpenTraced(ctx, f.url, postgres.Options{CheckBatch: 1}, shared)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []verity.PINCheck{appCheck(f, 1, verity.UseStepIt, 8, 10), appCheck(f, 2, verity.CountIt, 0, 10)} {
		if out, err := db.CheckPIN(ctx, c); err != nil || !out.Applied {
			t.Fatalf("CheckPIN(%s) = %+v, %v; want applied", c.UserID, out, err)
		}
	}
	if sizes := shared.take(); len(sizes) > 0 {
		t.Errorf("with sharing off, app checks sent %d shared statements", len(sizes))
	}
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	if last, recorded, _ := appState(t, conn, 1); last != 8 || !slices.Equal(recorded, []int64{7, 8}) {
		t.Errorf("u1: last step %d, recorded %v; want 8, [7 8]", last, recorded)
	}
	if _, _, failures := appState(t, conn, 2); failures != 1 {
		t.Errorf("u2: %d failures, want 1", failures)
	}
}
