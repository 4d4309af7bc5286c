package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

// batchRecorder records how many calls each shared statement carried, in
// the order they were sent, and the errors statements ended with (a
// deadlock would otherwise be hidden by the re-run of each call alone).
// It records the check statements, or, with match set, the shared
// statements whose text holds match.
type batchRecorder struct {
	match  string
	mu     sync.Mutex
	sizes  []int
	failed []error
}

func (r *batchRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	match := r.match
	if match == "" {
		match = "code_hash"
	}
	if strings.Contains(d.SQL, "WITH ORDINALITY") && strings.Contains(d.SQL, match) {
		users, _ := d.Args[0].([]string)
		r.mu.Lock()
		r.sizes = append(r.sizes, len(users))
		r.mu.Unlock()
	}
	return ctx
}

func (r *batchRecorder) TraceQueryEnd(_ context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if d.Err != nil {
		r.mu.Lock()
		r.failed = append(r.failed, d.Err)
		r.mu.Unlock()
	}
}

func (r *batchRecorder) take() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sizes
	r.sizes = nil
	return s
}

// numberedUsers adds users u2…u<n> to f's service (u1 is f's own) and
// returns u1…u<n> by number.
func numberedUsers(t *testing.T, f *fixture, n int) map[int]*verity.User {
	t.Helper()
	users := make(map[int]*verity.User, n)
	for i := 1; i <= n; i++ {
		u := &verity.User{ID: fmt.Sprintf("u%d", i), ServiceID: f.service.ID, IDInService: fmt.Sprintf("user%d", i),
			Phone: "+3725555555", PhoneType: "MOBILE", CreatedAt: t0}
		if i > 1 {
			if err := f.db.CreateUser(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
		users[i] = u
	}
	return users
}

// batchUsers adds users u2…u<n> to f's service (u1 is f's own) and starts
// for each user i a PIN p<i> whose hash is codeHash(i), pending for an hour
// from t0.
func batchUsers(t *testing.T, f *fixture, n int) {
	t.Helper()
	ctx := context.Background()
	for i, u := range numberedUsers(t, f, n) {
		p := start(u, fmt.Sprintf("p%d", i), t0)
		p.PIN.Hash = codeHash(byte(i))
		if _, err := f.db.StartPIN(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

// userCheck checks typed against user i's PIN at t0 + 1 s, with limits of
// 5 tries per PIN and a failure budget no test reaches.
func userCheck(f *fixture, i int, typed []byte) verity.PINCheck {
	now := t0.Add(time.Second)
	return verity.PINCheck{ServiceID: f.service.ID, UserID: fmt.Sprintf("u%d", i), Judge: byHash(typed), CodeHash: typed,
		Now: now, MaxAttempts: 5, FailureWindowStart: now.Add(-time.Hour), FailureLimit: 1 << 20}
}

// pinState reads user i's PIN tries, whether it was used, and the user's
// failures.
func pinState(t *testing.T, conn *pgx.Conn, i int) (attempts int, used bool, failures int) {
	t.Helper()
	if err := conn.QueryRow(context.Background(), `SELECT p.attempts, p.consumed_at IS NOT NULL, u.failure_count
		FROM pins p JOIN users u ON u.id = p.user_id WHERE p.id = $1`, fmt.Sprintf("p%d", i)).Scan(&attempts, &used, &failures); err != nil {
		t.Fatal(err)
	}
	return attempts, used, failures
}

// holdUser locks user id's row in a transaction of its own until the
// returned function commits it.
func holdUser(t *testing.T, url, id string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn := mustConnect(t, url)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
		conn.Close(ctx)
	}
}

// oneLeader opens a traced store on a fixture with users u1…u<users>, which
// runs one check statement at a time, of up to 16 checks.
func oneLeader(t *testing.T, users int) (*fixture, *postgres.DB, *batchRecorder) {
	t.Helper()
	f := newFixture(t, postgres.Options{})
	batchUsers(t, f, users)
	rec := &batchRecorder{}
	db := openTraced(t, f, rec)
	db.SetCheckBatching(16, 1)
	return f, db, rec
}

// waitQueued waits until n checks of db wait for a statement.
func waitQueued(t *testing.T, db *postgres.DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); db.QueuedChecks() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d checks queued after 10 s, want %d", db.QueuedChecks(), n)
		}
	}
}

type checkOutcome struct {
	user string
	out  verity.PINChecked
	err  error
}

// wrongCodesBehindU1 sends a wrong code for each of users u1…u<n> while
// u1's row is locked elsewhere: u1's check leads a statement that waits for
// the lock, the others queue behind it, and then the lock is released. The
// n outcomes arrive on the returned channel.
func wrongCodesBehindU1(t *testing.T, f *fixture, db *postgres.DB, n int) <-chan checkOutcome {
	t.Helper()
	release := holdUser(t, f.url, "u1")
	results := make(chan checkOutcome, n)
	for i := 1; i <= n; i++ {
		go func() {
			out, err := db.CheckPIN(context.Background(), userCheck(f, i, codeHash(99)))
			results <- checkOutcome{fmt.Sprintf("u%d", i), out, err}
		}()
		if i == 1 {
			waitForLockWaits(t, f.url, 1)
		} else {
			waitQueued(t, db, i-1)
		}
	}
	release()
	return results
}

// TestChecksQueuedBehindAStatementShareTheNext: with one statement in
// flight at most, checks that arrive while it waits queue, and the next
// statement decides them together, each check answered with its own user's
// outcome; a second check of a user already in that statement waits for
// the one after.
func TestChecksQueuedBehindAStatementShareTheNext(t *testing.T) {
	ctx := context.Background()
	f, db, rec := oneLeader(t, 6)

	release := holdUser(t, f.url, "u1")
	results := make(chan checkOutcome, 8)
	send := func(i int, typed []byte) {
		go func() {
			out, err := db.CheckPIN(ctx, userCheck(f, i, typed))
			results <- checkOutcome{fmt.Sprintf("u%d", i), out, err}
		}()
	}
	send(1, codeHash(99)) // leads, and waits for u1's lock
	waitForLockWaits(t, f.url, 1)
	queued := []struct {
		user  int
		typed []byte
	}{{2, codeHash(2)}, {3, codeHash(99)}, {4, codeHash(4)}, {5, codeHash(99)}, {6, codeHash(99)}, {2, codeHash(2)}}
	for n, q := range queued {
		send(q.user, q.typed)
		waitQueued(t, db, n+1)
	}
	release()

	type want struct {
		verdict verity.PINVerdict
		applied bool
	}
	wants := map[string][]want{
		"u1": {{verity.CountIt, true}},
		"u2": {{verity.ConsumeIt, true}, {verity.LeaveAsIs, false}}, // in either order: the second finds the PIN used
		"u3": {{verity.CountIt, true}}, "u4": {{verity.ConsumeIt, true}},
		"u5": {{verity.CountIt, true}}, "u6": {{verity.CountIt, true}},
	}
	got := map[string][]want{}
	for range 1 + len(queued) {
		r := <-results
		if r.err != nil {
			t.Fatalf("check of %s: %v", r.user, r.err)
		}
		if r.out.User == nil || r.out.User.ID != r.user || r.out.PIN == nil || r.out.PIN.UserID != r.user {
			t.Fatalf("check of %s answered with %+v: another check's outcome", r.user, r.out)
		}
		got[r.user] = append(got[r.user], want{r.out.Verdict, r.out.Applied})
	}
	for user, w := range wants {
		g := got[user]
		if len(g) == 2 && g[0] != w[0] {
			g[0], g[1] = g[1], g[0]
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s's checks: %v (verdict, applied), want %v", user, g, w)
		}
	}
	if sizes := rec.take(); fmt.Sprint(sizes) != "[1 5 1]" {
		t.Errorf("the statements carried %v checks; want [1 5 1]: the leader's, the five queued users', then u2's second", sizes)
	}
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	for i, w := range []struct {
		attempts int
		used     bool
	}{{1, false}, {0, true}, {1, false}, {0, true}, {1, false}, {1, false}} {
		attempts, used, failures := pinState(t, conn, i+1)
		if attempts != w.attempts || used != w.used || failures != w.attempts {
			t.Errorf("u%d: PIN tries %d, used %v, user failures %d; want %d, %v, %d", i+1, attempts, used, failures, w.attempts, w.used, w.attempts)
		}
	}
}

// TestSharedCheckStatementThatFailsIsRunPerCheck: when a statement shared
// by several checks fails, each of its checks runs again in a statement of
// its own, so one check's failure is not the others'; unless the database
// is unavailable, which would fail each check again, a deadline at a time:
// then every check gets the error at once.
func TestSharedCheckStatementThatFailsIsRunPerCheck(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
		sizes       string
	}{
		{"a failure", errors.New("injected: the shared statement fails"), false, "[1 1 1 1]"},
		{"the database unavailable", fmt.Errorf("injected: %w", context.DeadlineExceeded), true, "[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, db, rec := oneLeader(t, 4)
			var failed atomic.Int32
			db.FailSharedChecks(func() error {
				failed.Add(1)
				return tc.err
			})

			results := wrongCodesBehindU1(t, f, db, 4)
			for range 4 {
				r := <-results
				switch {
				case r.user == "u1" || !tc.unavailable:
					if r.err != nil || r.out.Verdict != verity.CountIt || !r.out.Applied || r.out.User.ID != r.user {
						t.Errorf("check of %s = %+v, %v; want its wrong try counted", r.user, r.out, r.err)
					}
				case !errors.Is(r.err, context.DeadlineExceeded) || r.out.User != nil:
					t.Errorf("check of %s = %+v, %v; want the shared statement's error", r.user, r.out, r.err)
				}
			}
			if n := failed.Load(); n != 1 {
				t.Errorf("%d shared statements failed, want 1", n)
			}
			if sizes := rec.take(); fmt.Sprint(sizes) != tc.sizes {
				t.Errorf("the statements sent carried %v checks; want %s", sizes, tc.sizes)
			}
		})
	}
}

// TestQueuedCheckWithdrawsWhenItsContextEnds: a check still queued when
// its caller gives up leaves the queue and changes nothing.
func TestQueuedCheckWithdrawsWhenItsContextEnds(t *testing.T) {
	ctx := context.Background()
	f, db, _ := oneLeader(t, 2)

	release := holdUser(t, f.url, "u1")
	first := make(chan error, 1)
	go func() {
		_, err := db.CheckPIN(ctx, userCheck(f, 1, codeHash(99)))
		first <- err
	}()
	waitForLockWaits(t, f.url, 1)
	cctx, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() {
		_, err := db.CheckPIN(cctx, userCheck(f, 2, codeHash(99)))
		second <- err
	}()
	waitQueued(t, db, 1)
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("the queued check whose context ended: %v, want context.Canceled", err)
	}
	if n := db.QueuedChecks(); n != 0 {
		t.Fatalf("%d checks queued after the withdrawal, want 0", n)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	if attempts, used, failures := pinState(t, conn, 2); attempts != 0 || used || failures != 0 {
		t.Fatalf("u2 after its withdrawn check: PIN tries %d, used %v, failures %d; want nothing changed", attempts, used, failures)
	}
}

// TestPanicDecidingSharedChecksFailsThemAndFreesTheStore: a panic while a
// statement decides several checks answers each of them with an internal
// error, without running them again (where it panicked is unknown: the
// statement may have committed), and leaves the store working: it holds
// no user as in a statement and no leader's place, so the same users' next
// checks are decided.
func TestPanicDecidingSharedChecksFailsThemAndFreesTheStore(t *testing.T) {
	ctx := context.Background()
	f, db, rec := oneLeader(t, 4)
	var shared atomic.Int32
	db.FailSharedChecks(func() error {
		if shared.Add(1) == 1 {
			panic("injected: deciding the shared checks")
		}
		return nil
	})

	results := wrongCodesBehindU1(t, f, db, 4)
	for range 4 {
		r := <-results
		if r.user == "u1" {
			if r.err != nil || r.out.Verdict != verity.CountIt || !r.out.Applied {
				t.Errorf("check of u1, alone in its statement = %+v, %v; want its wrong try counted", r.out, r.err)
			}
		} else if verity.ErrorCode(r.err) != verity.EINTERNAL || r.out.User != nil {
			t.Errorf("check of %s = %+v, %v; want an internal error", r.user, r.out, r.err)
		}
	}
	if sizes := rec.take(); fmt.Sprint(sizes) != "[1]" {
		t.Errorf("the statements sent carried %v checks; want [1]: u1's, and nothing run again after the panic", sizes)
	}

	// A store that still held u2-u4 as in a statement, or its one leader's
	// place, would queue these for ever: the deadline fails them instead.
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var next sync.WaitGroup
	for i := 2; i <= 4; i++ {
		next.Go(func() {
			if out, err := db.CheckPIN(tctx, userCheck(f, i, codeHash(99))); err != nil || out.Verdict != verity.CountIt || !out.Applied {
				t.Errorf("u%d's next check = %+v, %v; want its wrong try counted", i, out, err)
			}
		})
	}
	next.Wait()
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	for i := 2; i <= 4; i++ {
		if attempts, used, failures := pinState(t, conn, i); attempts != 1 || used || failures != 1 {
			t.Errorf("u%d: PIN tries %d, used %v, failures %d; want the one try of its next check", i, attempts, used, failures)
		}
	}
}

// TestBatchesLockingUsersInOppositeOrdersDoNotDeadlock: node A's statement
// decides u1 then u2, node B's u2 then u1, each queued in that order, and
// both reach the users' locks at once. Every statement locks its users in
// id order, so B waits for A rather than holding u2 while A waits for it:
// no deadlock, no statement fails, every try is counted. (Locking in the
// order the checks arrived, A would hold u1 and wait for u2 while B held
// u2 and waited for u1.)
func TestBatchesLockingUsersInOppositeOrdersDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	batchUsers(t, f, 4)
	var recA, recB batchRecorder
	a, b := openTraced(t, f, &recA), openTraced(t, f, &recB)
	results := make(chan checkOutcome, 6)
	send := func(db *postgres.DB, i int) {
		go func() {
			out, err := db.CheckPIN(ctx, userCheck(f, i, codeHash(99)))
			results <- checkOutcome{fmt.Sprintf("u%d", i), out, err}
		}()
	}
	releaseU1 := holdUser(t, f.url, "u1")
	// Each node's one leader waits in a statement of its own (A on u3, B
	// on u4) while its next batch queues in the order given.
	for _, node := range []struct {
		db      *postgres.DB
		blocker int
		queued  [2]int
	}{{a, 3, [2]int{1, 2}}, {b, 4, [2]int{2, 1}}} {
		node.db.SetCheckBatching(16, 1)
		release := holdUser(t, f.url, fmt.Sprintf("u%d", node.blocker))
		send(node.db, node.blocker)
		waitForLockWaits(t, f.url, 1)
		for n, i := range node.queued {
			send(node.db, i)
			waitQueued(t, node.db, n+1)
		}
		release() // the leader's next statement takes the queued pair
		waitQueued(t, node.db, 0)
		waitForLockWaits(t, f.url, 1) // and waits for u1 (A), or for A's u1 (B)
	}
	waitForLockWaits(t, f.url, 2)
	releaseU1()

	for range 6 {
		r := <-results
		if r.err != nil || r.out.Verdict != verity.CountIt || !r.out.Applied {
			t.Errorf("check of %s = %+v, %v; want its wrong try counted", r.user, r.out, r.err)
		}
	}
	for _, rec := range []*batchRecorder{&recA, &recB} {
		rec.mu.Lock()
		if len(rec.failed) > 0 {
			t.Errorf("a statement failed: %v", rec.failed)
		}
		rec.mu.Unlock()
		if sizes := rec.take(); fmt.Sprint(sizes) != "[1 2]" {
			t.Errorf("a node's statements carried %v checks; want [1 2]: its blocker's, then the pair", sizes)
		}
	}
}

// TestBatchedChecksOnTwoNodesKeepEveryLimit: two nodes batch checks of the
// same users while single-statement wrong tries and consumes of the same
// PINs run beside them. Every statement succeeds (no deadlock between
// batches that lock several users, or between a batch and the single
// statements), each PIN is used at most once, and only by a right code it
// was pending for; its tries never pass the limit, and every try and
// failure a call reported is in the rows.
func TestBatchedChecksOnTwoNodesKeepEveryLimit(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	const users, maxAttempts = 40, 5
	batchUsers(t, f, users)
	var rec1, rec2 batchRecorder
	nodes := []*postgres.DB{openTraced(t, f, &rec1), openTraced(t, f, &rec2)}
	for _, db := range nodes {
		db.SetCheckBatching(8, 2)
		if err := db.Warm(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Per user: 8 wrong and 2 right checks, 2 single wrong tries and 1
	// single consume, shuffled.
	type call struct {
		user int
		kind string // "wrong", "right", "try", "consume"
	}
	var calls []call
	for i := 1; i <= users; i++ {
		for _, kind := range strings.Fields("wrong wrong wrong wrong wrong wrong wrong wrong right right try try consume") {
			calls = append(calls, call{i, kind})
		}
	}
	rand.Shuffle(len(calls), func(a, b int) { calls[a], calls[b] = calls[b], calls[a] })

	type tally struct{ counted, consumed int }
	var mu sync.Mutex
	tallies := make([]tally, users+1)
	var wg sync.WaitGroup
	errs := make(chan error, len(calls))
	for n, c := range calls {
		db := nodes[n%2]
		wg.Go(func() {
			now := t0.Add(time.Second)
			var counted, consumed bool
			var err error
			switch c.kind {
			case "wrong", "right":
				typed := codeHash(99)
				if c.kind == "right" {
					typed = codeHash(byte(c.user))
				}
				var out verity.PINChecked
				out, err = db.CheckPIN(ctx, userCheck(f, c.user, typed))
				counted = out.Applied && out.Verdict == verity.CountIt
				consumed = out.Applied && out.Verdict == verity.ConsumeIt
				if consumed && c.kind != "right" {
					err = fmt.Errorf("a wrong code consumed u%d's PIN", c.user)
				}
			case "try":
				counted, err = db.CountFailedTry(ctx, verity.FailedTry{PINID: fmt.Sprintf("p%d", c.user), UserID: fmt.Sprintf("u%d", c.user),
					Now: now, MaxAttempts: maxAttempts, FailureWindowStart: now.Add(-time.Hour), FailureLimit: 1 << 20})
			case "consume":
				consumed, err = db.ConsumePIN(ctx, verity.PINConsume{PINID: fmt.Sprintf("p%d", c.user), UserID: fmt.Sprintf("u%d", c.user),
					Now: now, MaxAttempts: maxAttempts, FailureWindowStart: now.Add(-time.Hour), FailureLimit: 1 << 20})
			}
			if err != nil {
				errs <- fmt.Errorf("%s of u%d: %w", c.kind, c.user, err)
				return
			}
			mu.Lock()
			if counted {
				tallies[c.user].counted++
			}
			if consumed {
				tallies[c.user].consumed++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	for i := 1; i <= users; i++ {
		attempts, used, failures := pinState(t, conn, i)
		tl := tallies[i]
		switch {
		case tl.consumed > 1:
			t.Errorf("u%d's PIN was used %d times", i, tl.consumed)
		case used != (tl.consumed == 1):
			t.Errorf("u%d's PIN used: %v, but %d calls reported using it", i, used, tl.consumed)
		case attempts != tl.counted || failures != tl.counted:
			t.Errorf("u%d: PIN tries %d, user failures %d; %d calls reported a try counted", i, attempts, failures, tl.counted)
		case attempts > maxAttempts:
			t.Errorf("u%d: PIN tries %d passed the limit %d", i, attempts, maxAttempts)
		case !used && attempts < maxAttempts:
			t.Errorf("u%d: PIN neither used nor out of tries after its right codes (tries %d)", i, attempts)
		}
	}
	for _, rec := range []*batchRecorder{&rec1, &rec2} {
		for _, err := range rec.failed {
			t.Errorf("a statement failed: %v", err)
		}
	}
	shared := 0
	for _, sizes := range [][]int{rec1.take(), rec2.take()} {
		for _, n := range sizes {
			if n > 1 {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Error("no statement carried more than one check: the test did not exercise batches")
	}
	t.Logf("%d calls; %d statements shared by several checks", len(calls), shared)
}

// TestCheckStatementPlanFindsRowsByKeyAfterTheTablesGrew: the check
// statement's plan, made once for all arrays while the tables were small
// (as a node's connections plan it when they start, until autovacuum's next
// ANALYZE), still finds every user, PIN and app through its key after the
// tables grew a thousandfold: a plan that hash-joined the checks with a
// scan of the users took 21 ms a statement at 150,000 users.
func TestCheckStatementPlanFindsRowsByKeyAfterTheTablesGrew(t *testing.T) {
	f := newFixture(t, postgres.Options{})
	batchUsers(t, f, 20)
	planFindsRowsByKeyAfterGrowth(t, f, "check",
		`PREPARE stmt(text[], text[], timestamptz[], timestamptz[], int[], int[], bytea[]) AS `+postgres.DecidingCheckSQL(),
		`(ARRAY['u3', 'u7'], ARRAY['s1', 's1'], ARRAY[now(), now()], ARRAY[now(), now()], ARRAY[5, 5], ARRAY[5, 5],
		ARRAY['\x02'::bytea, '\x02'::bytea])`,
		`INSERT INTO pins (id, user_id, hash, created_at, expires_at)
		 SELECT 'gp' || i, 'g' || i, '\x02', now(), now() + interval '1 hour' FROM generate_series(1, 20000) i`)
}

// planFindsRowsByKeyAfterGrowth prepares a statement (prepare, named stmt)
// as a generic plan, the plan a prepared statement keeps, and plans it with
// args on the fixture's small tables; then adds 20,000 users with an active
// app each, runs grow, and fails t if the plan EXPLAIN EXECUTE gives now
// scans or hash-joins a table.
func planFindsRowsByKeyAfterGrowth(t *testing.T, f *fixture, what, prepare, args string, grow ...string) {
	t.Helper()
	ctx := context.Background()
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	for _, q := range append([]string{
		`SET plan_cache_mode = force_generic_plan`,
		prepare,
		`EXPLAIN EXECUTE stmt` + args, // plans it, on the small tables
		`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at)
		 SELECT 'g' || i, 's1', 'g' || i, '+3725555555', 'MOBILE', now() FROM generate_series(1, 20000) i`,
		`INSERT INTO factors (id, user_id, status, key_id, secret, algorithm, digits, period, created_at, activated_at)
		 SELECT 'gf' || i, 'g' || i, 'active', 'k', '\x00', 'SHA1', 6, 30, now(), now() FROM generate_series(1, 20000) i`,
	}, grow...) {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%.60s…: %v", q, err)
		}
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE stmt`+args, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range plan {
		if strings.Contains(line, "Seq Scan") || strings.Contains(line, "Hash Join") {
			t.Errorf("the %s statement's plan scans or hash-joins a table:\n%s", what, strings.Join(plan, "\n"))
			break
		}
	}
}

// TestRightCodeWaitingForAUserLockedOutMeanwhileConsumesNothing: a right
// code whose statement read the user under its failure limit, and then
// waited for the user's row while another node's wrong code took the user
// to the limit, does not use the PIN: as if the two had run one after the
// other. The lock re-checks the lockout on the committed row, for right
// codes as for wrong ones.
func TestRightCodeWaitingForAUserLockedOutMeanwhileConsumesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	batchUsers(t, f, 1)
	c := userCheck(f, 1, codeHash(1)) // u1's right code
	c.FailureLimit = 3
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE users SET failure_count = 2, failure_window_start = $1 WHERE id = 'u1'`, c.Now); err != nil {
		t.Fatal(err)
	}

	// Another node's wrong code, holding the user's row until it commits
	// the third failure.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET failure_count = 3 WHERE id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan checkOutcome, 1)
	go func() {
		out, err := f.db.CheckPIN(ctx, c)
		done <- checkOutcome{"u1", out, err}
	}()
	waitForLockWaits(t, f.url, 1)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.out.Applied {
		t.Fatalf("the right code = %+v, %v; want nothing applied: the user was locked out first", r.out, r.err)
	}
	if attempts, used, failures := pinState(t, conn, 1); used || attempts != 0 || failures != 3 {
		t.Fatalf("u1: PIN tries %d, used %v, failures %d; want the PIN unused, no try, the 3 failures", attempts, used, failures)
	}
}

// TestConsumeWaitingForAWrongCodeThatLocksTheUserOutConsumesNothing: the
// single-statement consume (CheckPIN's path after a first round found the
// state changed) waits for another node's wrong code that holds the user and
// the PIN and takes the user to its failure limit, and then uses nothing.
func TestConsumeWaitingForAWrongCodeThatLocksTheUserOutConsumesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, postgres.Options{})
	batchUsers(t, f, 1)
	now := t0.Add(time.Second)
	conn := mustConnect(t, f.url)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE users SET failure_count = 2, failure_window_start = $1 WHERE id = 'u1'`, now); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE users SET failure_count = 3 WHERE id = 'u1'`,
		`UPDATE pins SET attempts = attempts + 1 WHERE id = 'p1'`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		used bool
		err  error
	}
	done := make(chan result, 1)
	go func() {
		used, err := f.db.ConsumePIN(ctx, verity.PINConsume{PINID: "p1", UserID: "u1", Now: now, MaxAttempts: 5,
			FailureWindowStart: now.Add(-time.Hour), FailureLimit: 3})
		done <- result{used, err}
	}()
	waitForLockWaits(t, f.url, 1)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.used {
		t.Fatalf("ConsumePIN = %v, %v; want false: the user was locked out first", r.used, r.err)
	}
	if attempts, used, failures := pinState(t, conn, 1); used || attempts != 1 || failures != 3 {
		t.Fatalf("u1: PIN tries %d, used %v, failures %d; want the wrong code's try and failure, the PIN unused", attempts, used, failures)
	}
}
