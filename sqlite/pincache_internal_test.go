package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// cachedSnapshot copies the PIN cache on the writer goroutine, its owner,
// by a write that changes nothing and keeps the cache.
func cachedSnapshot(t *testing.T, db *DB) map[string]cachedUserPIN {
	t.Helper()
	snap := map[string]cachedUserPIN{}
	err := db.q.writeKeeping(context.Background(), "(snapshot)", func(tx *wtx) error {
		tx.q.pins.each(func(id string, e cachedUserPIN) { snap[id] = e })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// assertCacheMatches compares every cached user and PIN with what a reader
// connection reads from the committed database.
func assertCacheMatches(t *testing.T, db *DB, when string) int {
	t.Helper()
	snap := cachedSnapshot(t, db)
	for id, c := range snap {
		u, p, err := db.UserWithPIN(context.Background(), c.user.ServiceID, id)
		if err != nil {
			t.Fatalf("%s: UserWithPIN(%s) = %v, but the cache holds the user", when, id, err)
		}
		if d := cmp.Diff(*u, c.user); d != "" {
			t.Fatalf("%s: cached user differs from the database (-database +cache):\n%s", when, d)
		}
		if d := cmp.Diff(p, c.pin); d != "" {
			t.Fatalf("%s: cached PIN differs from the database (-database +cache):\n%s", when, d)
		}
		var seq int64
		if err := db.writer.QueryRow(`SELECT seq FROM users WHERE id = ?`, id).Scan(&seq); err != nil || seq != c.seq {
			t.Fatalf("%s: the cache holds seq %d for user %s, the database %d (%v)", when, c.seq, id, seq, err)
		}
		if !c.appKnown {
			continue
		}
		f, err := db.Factor(context.Background(), id)
		if verity.ErrorCode(err) == verity.ENOTFOUND || (err == nil && f.Status != "active") {
			f, err = nil, nil
		}
		if err != nil {
			t.Fatalf("%s: Factor(%s) = %v", when, id, err)
		}
		if d := cmp.Diff(f, c.app); d != "" {
			t.Fatalf("%s: cached app differs from the database's active one (-database +cache):\n%s", when, d)
		}
	}
	return len(snap)
}

// TestPINCacheMatchesTheDatabase runs a random mix of the writes that keep
// the PIN cache (starts, checks of every verdict, an authenticator app's
// verdicts) and of writes that do not (aborts, lone counts and consumes,
// method changes, pruning, apps deleted, enrolled and rekeyed, lone steps
// used), over a few users, and after each one compares every cached entry
// with the database.
func TestPINCacheMatchesTheDatabase(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, first := openWithUser(t, now)
	users := []*verity.User{first}
	for _, name := range []string{"bob", "carol", "dave"} {
		u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: name, Phone: "+3725555556",
			PhoneType: "MOBILE", CreatedAt: now}
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	// Bob starts with an active authenticator app, so checks sent to the
	// app write; apps come and go for everyone below.
	enrol := func(u *verity.User, at time.Time, activate bool) error {
		app := &verity.Factor{ID: uuid.NewString(), UserID: u.ID, Status: "pending", KeyID: "k",
			Secret: []byte("sealed " + u.ID), Algorithm: "SHA1", Digits: 6, Period: 30, CreatedAt: at}
		if err := db.PutPendingFactor(ctx, app); verity.ErrorCode(translate("", err)) == verity.ECONFLICT {
			return nil // already active
		} else if err != nil || !activate {
			return err // a pending app, which checks must not see
		}
		_, err := db.ActivateFactor(ctx, verity.FactorActivation{FactorID: app.ID, UserID: u.ID, Step: 1, Now: at})
		return err
	}
	if err := enrol(users[1], now, true); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(5, 1))
	clock, step := now, int64(1)
	verdicts := []verity.PINVerdict{verity.LeaveAsIs, verity.ConsumeIt, verity.CountIt, verity.CountIt, verity.ToTheApp}
	appVerdicts := []verity.PINVerdict{verity.LeaveAsIs, verity.UseStepIt, verity.CountIt}
	cachedSeen, appsSeen := 0, 0
	for i := range 3000 {
		clock = clock.Add(time.Duration(rng.IntN(20)) * time.Second)
		u := users[rng.IntN(len(users))]
		newest, _ := db.PendingPIN(ctx, u.ID)
		var what string
		var err error
		switch n := rng.IntN(24); {
		case n < 6:
			what = "start"
			_, err = db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID,
				PIN: verity.PIN{ID: uuid.NewString(), UserID: u.ID, Hash: []byte{byte(i), 1, 2},
					CreatedAt: clock, ExpiresAt: clock.Add(time.Duration(1+rng.IntN(5)) * time.Minute)},
				SendWindowStart: clock.Add(-10 * time.Minute), MaxSends: 20, ResendNotBefore: clock,
				FailureWindowStart: clock.Add(-10 * time.Minute), FailureLimit: 8})
		case n < 14:
			what = "check"
			v, av := verdicts[rng.IntN(len(verdicts))], appVerdicts[rng.IntN(len(appVerdicts))]
			step++
			_, err = db.CheckPIN(ctx, verity.PINCheck{ServiceID: svc.ID, UserID: u.ID, Now: clock,
				MaxAttempts: 3, FailureWindowStart: clock.Add(-10 * time.Minute), FailureLimit: 8,
				Judge: func(*verity.User, *verity.PIN) verity.PINVerdict { return v },
				JudgeApp: func(*verity.User, *verity.Factor) (verity.PINVerdict, int64) {
					return av, step
				}})
		case n < 15:
			what = "a check of another service's user"
			_, err = db.CheckPIN(ctx, verity.PINCheck{ServiceID: uuid.NewString(), UserID: u.ID, Now: clock,
				MaxAttempts: 3, Judge: func(*verity.User, *verity.PIN) verity.PINVerdict { return verity.ConsumeIt }})
			if verity.ErrorCode(translate("", err)) == verity.ENOTFOUND || err == sql.ErrNoRows {
				err = nil
			}
		case n < 16 && newest != nil:
			if rng.IntN(2) == 0 {
				what = "abort"
				err = db.AbortPIN(ctx, u.ID, newest.ID)
			} else {
				what = "an expiry"
				err = db.ExpirePIN(ctx, u.ID, newest.ID, clock)
			}
		case n < 17 && newest != nil:
			what = "a lone count"
			_, err = db.CountFailedTry(ctx, verity.FailedTry{PINID: newest.ID, UserID: u.ID, Now: clock,
				MaxAttempts: 3, FailureWindowStart: clock.Add(-10 * time.Minute), FailureLimit: 8})
		case n < 18 && newest != nil:
			what = "a lone consume"
			_, err = db.ConsumePIN(ctx, verity.PINConsume{PINID: newest.ID, UserID: u.ID, Now: clock,
				MaxAttempts: 3, FailureWindowStart: clock.Add(-10 * time.Minute), FailureLimit: 8})
		case n < 19:
			what = "a method change"
			err = db.SetLastMethod(ctx, u.ID, []string{"sms", "totp"}[rng.IntN(2)])
		case n < 20:
			what = "pruning"
			_, err = db.DeletePINsBefore(ctx, clock.Add(-3*time.Minute))
		case n < 21:
			what = "an app deleted"
			if err = db.DeleteFactor(ctx, u.ID); verity.ErrorCode(translate("", err)) == verity.ENOTFOUND {
				err = nil
			}
		case n < 22:
			what = "an app enrolled"
			err = enrol(u, clock, rng.IntN(2) == 0)
		case n < 23:
			what = "an app rekeyed"
			if f, ferr := db.Factor(ctx, u.ID); ferr == nil {
				_, err = db.RekeyFactor(ctx, f.ID, f.KeyID, uuid.NewString(), []byte(uuid.NewString()))
			}
		default:
			what = "a lone step used"
			if f, ferr := db.Factor(ctx, u.ID); ferr == nil {
				step++
				_, err = db.UseStep(ctx, verity.StepUse{FactorID: f.ID, UserID: u.ID, Step: step, Now: clock,
					FailureWindowStart: clock.Add(-10 * time.Minute), FailureLimit: 8})
			}
		}
		if err != nil {
			t.Fatalf("step %d, %s: %v", i, what, err)
		}
		cachedSeen += assertCacheMatches(t, db, what)
		for _, c := range cachedSnapshot(t, db) {
			if c.app != nil {
				appsSeen++
			}
		}
	}
	// The comparisons must have had something to compare.
	if cachedSeen < 1500 || appsSeen < 100 {
		t.Fatalf("the cache held %d entries and %d apps over 3000 steps: the test did not exercise it", cachedSeen, appsSeen)
	}
}

// TestPINCacheSeesAnotherConnection: a change committed by another
// connection (another process on the same file) reaches the next check,
// though the writer had the user cached.
func TestPINCacheSeesAnotherConnection(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, u := openWithUser(t, now)
	pinID := uuid.NewString()
	if st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID,
		PIN:             verity.PIN{ID: pinID, UserID: u.ID, Hash: []byte("h"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		SendWindowStart: now.Add(-time.Hour), MaxSends: 5, ResendNotBefore: now,
		FailureWindowStart: now.Add(-time.Hour), FailureLimit: 5}); err != nil || !st.Started {
		t.Fatalf("StartPIN = %+v, %v", st, err)
	}
	if n := len(cachedSnapshot(t, db)); n != 1 {
		t.Fatalf("after a start the cache holds %d users, want 1", n)
	}

	other, err := sql.Open("sqlite", "file:"+db.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Exec(`UPDATE pins SET consumed_at = ? WHERE id = ?`, micros(now), pinID); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(`INSERT INTO user_failures (user_seq, failure_count, window_start) SELECT seq, 3, ? FROM users WHERE id = ?`, micros(now), u.ID); err != nil {
		t.Fatal(err)
	}

	var seenUser *verity.User
	var seenPIN *verity.PIN
	if _, err := db.CheckPIN(ctx, verity.PINCheck{ServiceID: svc.ID, UserID: u.ID, Now: now, MaxAttempts: 3,
		Judge: func(u *verity.User, p *verity.PIN) verity.PINVerdict {
			seenUser, seenPIN = u, p
			return verity.LeaveAsIs
		}}); err != nil {
		t.Fatal(err)
	}
	if seenPIN == nil || seenPIN.ConsumedAt == nil || seenUser.FailureCount != 3 {
		t.Fatalf("the check saw PIN %+v and %d failures; want the other connection's consumed_at and 3", seenPIN, seenUser.FailureCount)
	}
	assertCacheMatches(t, db, "after the other connection's change")
}

func TestPINCacheStaysWithinItsLimit(t *testing.T) {
	c := newPINCache(3, 4096)
	defer c.close()
	for i := range 10 {
		c.put(&verity.User{ID: uuid.NewString(), ServiceID: "s"}, int64(i+1), &verity.PIN{ID: "p", Hash: []byte{byte(i)}})
		if c.len() > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, limit 3", i+1, c.len())
		}
	}
	u := &verity.User{ID: "u", ServiceID: "s"}
	c.put(u, 11, nil)
	if _, seq, _, ok := c.get("u", "s"); !ok || seq != 11 {
		t.Fatal("the newest entry was evicted to make room for itself")
	}
	if _, _, _, ok := c.get("u", "another service"); ok {
		t.Fatal("get answered for a user of another service")
	}
	if _, _, _, ok := c.get("u", ""); ok {
		t.Fatal("get answered for a user of no service")
	}
	// An entry too large for a record is not cached, and replaces what was.
	c.put(&verity.User{ID: "u", ServiceID: "s", IDInService: strings.Repeat("x", maxRecord)}, 11, nil)
	if _, _, _, ok := c.get("u", "s"); ok {
		t.Fatal("an entry larger than a record was cached")
	}
	c.put(u, 11, &verity.PIN{ID: "p", Hash: []byte("hash-of-a-refused-entry")})
	c.putApp("u", &verity.Factor{ID: "f", Secret: make([]byte, maxRecord)})
	if _, _, _, ok := c.get("u", "s"); ok {
		t.Fatal("an app too large for the record left the user's entry without it")
	}
	if c.len() > 3 || bytes.Contains(c.scratch[:cap(c.scratch)], []byte("hash-of-a-refused-entry")) || cap(c.scratch) > 2*maxRecord {
		t.Fatalf("a refused entry left %d entries, or its bytes in a scratch space of %d", c.len(), cap(c.scratch))
	}
}

// TestPINCacheRingAgainstAModel drives a small cache, whose ring wraps
// and evicts by bytes as well as by count, with random writes, and holds
// it to a plain map of what each user's entry must be: whatever the cache
// still holds is exactly the user's latest entry, the entry just written
// is always held, and the index holds exactly the live records.
func TestPINCacheRingAgainstAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newPINCache(16, 2048)
	defer c.close()
	model := map[string]cachedUserPIN{}
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	at := func(us int64) time.Time { return fromMicros(us) }
	wraps, evictions := 0, 0
	for step := range 20000 {
		id := ids[rng.IntN(len(ids))]
		headBefore := c.head
		_, _, _, heldBefore := c.get(id, "svc")
		countBefore := c.count
		switch op := rng.IntN(10); {
		case op < 4:
			u := &verity.User{ID: id, ServiceID: "svc", IDInService: strings.Repeat("x", rng.IntN(60)),
				Phone: "+3725512345", PhoneType: "MOBILE", CreatedAt: at(1), FailureCount: rng.IntN(5), FailureWindowStart: at(int64(rng.IntN(9)))}
			var p *verity.PIN
			if rng.IntN(4) > 0 {
				p = &verity.PIN{ID: uuid.NewString(), UserID: id, Hash: []byte{1, byte(step), byte(step >> 8)},
					CreatedAt: at(2), ExpiresAt: at(3), Attempts: rng.IntN(3)}
				if rng.IntN(5) == 0 {
					consumed := at(4)
					p.ConsumedAt = &consumed
				}
			}
			seq := int64(step + 1)
			c.put(u, seq, p)
			model[id] = cachedUserPIN{user: *u, seq: seq, pin: p}
			if !heldBefore && c.count <= countBefore {
				evictions++
			}
		case op < 6:
			if e, ok := model[id]; ok {
				if _, _, _, held := c.get(id, "svc"); !held {
					delete(model, id) // evicted: the model follows
					break
				}
				f := &verity.Factor{ID: uuid.NewString(), UserID: id, Status: "active", KeyID: "k1",
					Secret: []byte("ciphertext"), Algorithm: "SHA1", Digits: 6, Period: 30, LastStep: int64(step), CreatedAt: at(5), ActivatedAt: at(6)}
				if rng.IntN(3) == 0 {
					f = nil
				}
				c.putApp(id, f)
				e.app, e.appKnown = f, true
				model[id] = e
			}
		case op < 8:
			if e, ok := model[id]; ok && e.pin != nil {
				if _, _, _, held := c.get(id, "svc"); !held {
					delete(model, id)
					break
				}
				try := verity.FailedTry{UserID: id, PINID: e.pin.ID, Now: at(int64(step)), FailureWindowStart: at(int64(rng.IntN(9)))}
				c.counted(try)
				e.pin.Attempts++
				if micros(e.user.FailureWindowStart) > micros(try.FailureWindowStart) {
					e.user.FailureCount++
				} else {
					e.user.FailureCount, e.user.FailureWindowStart = 1, try.Now
				}
				model[id] = e
			}
		case op < 9 && rng.IntN(2) == 0:
			c.drop(id)
			delete(model, id)
		case op < 9:
			if e, ok := model[id]; ok {
				if _, _, _, held := c.get(id, "svc"); !held {
					delete(model, id)
					break
				}
				factorID := "another app"
				if e.app != nil && rng.IntN(4) > 0 {
					factorID = e.app.ID
				}
				c.stepUsed(id, factorID, int64(step))
				if e.appKnown && e.app != nil && e.app.ID == factorID {
					e.app.LastStep = int64(step)
					model[id] = e
				} else {
					delete(model, id) // the cache cannot say: it forgets the user
				}
			}
		default:
			if rng.IntN(20) == 0 {
				c.clear()
				clear(model)
			}
		}
		if c.head/2048 != headBefore/2048 {
			wraps++
		}
		if _, ok := model[id]; ok {
			if _, _, _, held := c.get(id, "svc"); !held {
				t.Fatalf("step %d: the entry just written for %s is not held", step, id)
			}
		}
		held := 0
		for id, want := range model {
			got, ok := c.entry(id)
			if !ok {
				delete(model, id) // evicted
				continue
			}
			held++
			if d := cmp.Diff(want, got, cmp.AllowUnexported(cachedUserPIN{})); d != "" {
				t.Fatalf("step %d: entry of %s differs from the model (-model +cache):\n%s", step, id, d)
			}
		}
		if held != c.count || held > 16 {
			t.Fatalf("step %d: the cache holds %d entries by its count, %d found, limit 16", step, c.count, held)
		}
		n := 0
		c.each(func(string, cachedUserPIN) { n++ })
		if n != c.count {
			t.Fatalf("step %d: the index holds %d entries, the count says %d", step, n, c.count)
		}
	}
	if wraps < 100 || evictions < 100 {
		t.Fatalf("the ring wrapped %d times and evicted %d times: the test did not exercise it", wraps, evictions)
	}
}

// TestPINCacheZeroesWhatItForgets: a dropped, replaced or cleared entry's
// PIN hash is not left in the ring, nor in the encoder's scratch space.
func TestPINCacheZeroesWhatItForgets(t *testing.T) {
	c := newPINCache(16, 4096)
	defer c.close()
	secret := []byte("hash-of-a-consumed-pin-0123456789")
	u := &verity.User{ID: uuid.NewString(), ServiceID: "svc"}
	c.put(u, 1, &verity.PIN{ID: "p1", Hash: secret})
	if !bytes.Contains(c.ring, secret) {
		t.Fatal("the ring does not hold the entry's hash: the test looks in the wrong place")
	}
	c.drop(u.ID)
	if bytes.Contains(c.ring, secret) {
		t.Fatal("a dropped entry's PIN hash is still in the ring")
	}
	c.put(u, 1, &verity.PIN{ID: "p1", Hash: secret})
	c.put(u, 1, &verity.PIN{ID: "p2", Hash: []byte("another")})
	if bytes.Contains(c.ring, secret) {
		t.Fatal("a replaced entry's PIN hash is still in the ring")
	}
	if bytes.Contains(c.scratch[:cap(c.scratch)], []byte("another")) {
		t.Fatal("the last entry's PIN hash is still in the encoder's scratch space")
	}
	c.put(u, 1, &verity.PIN{ID: "p1", Hash: secret})
	c.clear()
	if bytes.Contains(c.ring, secret) {
		t.Fatal("a cleared entry's PIN hash is still in the ring")
	}
}
