package app_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/sqlite"
)

func TestPINHashIsTaggedAndKeyedByTheUserAndTheCode(t *testing.T) {
	keys, err := app.NewKeys(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	h := keys.PINHash("u1", "123456")
	if len(h) != verity.CodeHashSize || h[0] != 2 {
		t.Fatalf("PINHash = %x: want %d bytes starting with the tag 2", h, verity.CodeHashSize)
	}
	if !bytes.Equal(h, keys.PINHash("u1", "123456")) {
		t.Fatal("PINHash differs for the same user and code")
	}
	for _, other := range [][]byte{keys.PINHash("u2", "123456"), keys.PINHash("u1", "123457"), keys.PINHash("u11", "23456")} {
		if bytes.Equal(h, other) {
			t.Fatalf("PINHash(u1, 123456) = %x equals the hash of another user or code", h)
		}
	}
	otherKeys, _ := app.NewKeys(bytes.Repeat([]byte{2}, 32))
	if bytes.Equal(h, otherKeys.PINHash("u1", "123456")) {
		t.Fatal("PINHash does not depend on the server key")
	}
}

func TestPINMatchesUnderBothSchemes(t *testing.T) {
	keys, err := app.NewKeys(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	byUser := &verity.PIN{ID: "p1", UserID: "u1", Hash: keys.PINHash("u1", "123456")}
	byPIN := &verity.PIN{ID: "p1", UserID: "u1", Hash: keys.PINHashByPIN("p1", "123456")}
	for _, tc := range []struct {
		name string
		pin  *verity.PIN
		code string
		want bool
	}{
		{"by user, right", byUser, "123456", true},
		{"by user, wrong", byUser, "123457", false},
		{"by PIN, right", byPIN, "123456", true},
		{"by PIN, wrong", byPIN, "123457", false},
		{"by user, another user's PIN", &verity.PIN{ID: "p2", UserID: "u2", Hash: keys.PINHash("u2", "123456")}, "123456", false},
	} {
		if got := keys.PINMatches(tc.pin, tc.code, keys.PINHash("u1", tc.code)); got != tc.want {
			t.Errorf("%s: PINMatches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A PIN started before the hash was keyed by the user, still pending when
// the server is upgraded, is checked as before: wrong codes counted, the
// right one verified once.
func TestAPINPendingAcrossTheUpgradeStillVerifies(t *testing.T) {
	onEachStore(t, testAPINPendingAcrossTheUpgradeStillVerifies)
}

// onEachStore runs test on an App over SQLite and over PostgreSQL, where a
// PIN check may be decided in the statement that reads.
func onEachStore(t *testing.T, test func(*testing.T, *env)) {
	for name, open := range map[string]func(*testing.T) *env{"sqlite": newEnv, "postgres": newPostgresEnv} {
		t.Run(name, func(t *testing.T) { test(t, open(t)) })
	}
}

func testAPINPendingAcrossTheUpgradeStillVerifies(t *testing.T, e *env) {
	ctx := context.Background()
	u := e.newUser(t, "alice")
	now := e.clock.Now()
	s := e.service.Settings
	pin := verity.PIN{ID: "0190c0de-0000-7000-8000-000000000001", UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.PINValidity())}
	pin.Hash = e.keys.PINHashByPIN(pin.ID, "424242")
	if st, err := e.db.StartPIN(ctx, verity.PINStart{ServiceID: e.service.ID, PIN: pin,
		SendWindowStart: now.Add(-s.SendWindow()), MaxSends: s.MaxSends, ResendNotBefore: now.Add(-s.ResendInterval()),
		FailureWindowStart: now.Add(-s.FailureWindow()), FailureLimit: s.FailureLimit}); err != nil || !st.Started {
		t.Fatalf("StartPIN = %+v, %v", st, err)
	}
	e.clock.Advance(time.Second)
	for _, tc := range []struct{ token, result string }{
		{"000000", app.ResultInvalid}, {"424242", app.ResultVerified}, {"424242", app.ResultInvalid},
	} {
		got, err := e.app.CheckVerification(ctx, e.account, e.service.ID, u.ID, app.Check{Token: tc.token})
		if err != nil || got.Result != tc.result {
			t.Fatalf("check %s = %+v, %v; want %s", tc.token, got, err, tc.result)
		}
	}
	if p, err := e.db.PendingPIN(ctx, u.ID); err != nil || p.Attempts != 1 || p.ConsumedAt == nil {
		t.Fatalf("the PIN after the checks = %+v, %v; want 1 attempt and used", p, err)
	}
}

// PINHashByPIN is byte for byte what releases before user-keyed hashes
// stored, so that their nodes can check the PINs such a node sends.
func TestPINHashByPINIsTheEarlierReleasesHash(t *testing.T) {
	master := bytes.Repeat([]byte{1}, 32)
	keys, err := app.NewKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	keyMAC := hmac.New(sha256.New, master)
	keyMAC.Write([]byte("verity pin hash v1"))
	m := hmac.New(sha256.New, keyMAC.Sum(nil))
	m.Write([]byte("p1\x00123456"))
	if got, want := keys.PINHashByPIN("p1", "123456"), m.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("PINHashByPIN = %x, want %x", got, want)
	}
}

// With App.PINHashByPIN a node stores PINs hashed by their id, which nodes
// of earlier releases can check; every node checks both kinds.
func TestNodesHashingEitherWayCheckEachOthersPINs(t *testing.T) {
	onEachStore(t, testNodesHashingEitherWayCheckEachOthersPINs)
}

func testNodesHashingEitherWayCheckEachOthersPINs(t *testing.T, e *env) {
	ctx := context.Background()
	byPIN := app.New(e.db, e.outbox, e.keys, nil)
	byPIN.Seeds, byPIN.Now, byPIN.PINHashByPIN = e.seeds, e.clock.Now, true
	for _, tc := range []struct {
		name           string
		starts, checks *app.App
		byUser         bool
	}{
		{"hashed by PIN, checked by the other node", byPIN, e.app, false},
		{"hashed by user, checked by the node hashing by PIN", e.app, byPIN, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := e.newUser(t, tc.name)
			sent := e.outbox.count()
			if _, err := tc.starts.StartVerification(ctx, e.account, e.service.ID, u.ID, "sms"); err != nil || e.outbox.count() != sent+1 {
				t.Fatalf("StartVerification = %v, %d messages; want one more", err, e.outbox.count())
			}
			text := e.outbox.msgs[sent].Text
			code := text[len(text)-6:]
			p, err := e.db.PendingPIN(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := e.keys.PINHashByPIN(p.ID, code)
			if tc.byUser {
				want = e.keys.PINHash(u.ID, code)
			}
			if !bytes.Equal(p.Hash, want) {
				t.Fatalf("stored hash %x, want %x", p.Hash, want)
			}
			for _, step := range []struct{ token, result string }{
				{wrongOf(code), app.ResultInvalid}, {code, app.ResultVerified},
			} {
				got, err := tc.checks.CheckVerification(ctx, e.account, e.service.ID, u.ID, app.Check{Token: step.token})
				if err != nil || got.Result != step.result {
					t.Fatalf("check %s = %+v, %v; want %s", step.token, got, err, step.result)
				}
			}
		})
	}
}

// wrongOf returns a code of the same length that differs from code.
func wrongOf(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// At a PIN's expiry and at its try limit the answer is the same on both
// stores (on PostgreSQL the statement that reads decides and writes first,
// and the app's judge must agree with it; a disagreement would be a 500).
func TestChecksAtThePINsLimits(t *testing.T) {
	onEachStore(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		s := e.service.Settings
		startPIN := func(u *verity.User) (code string, expires time.Time) {
			t.Helper()
			sent := e.outbox.count()
			if _, err := e.app.StartVerification(ctx, e.account, e.service.ID, u.ID, "sms"); err != nil {
				t.Fatal(err)
			}
			text := e.outbox.msgs[sent].Text
			return text[len(text)-6:], e.clock.Now().Add(s.PINValidity())
		}
		checkAt := func(u *verity.User, at time.Time, token, want string) {
			t.Helper()
			e.clock.Set(at)
			got, err := e.app.CheckVerification(ctx, e.account, e.service.ID, u.ID, app.Check{Token: token})
			if err != nil || got.Result != want {
				t.Fatalf("check %s at %v = %+v, %v; want %s", token, at, got, err, want)
			}
		}
		wantAttempts := func(u *verity.User, attempts int, used bool) {
			t.Helper()
			p, err := e.db.PendingPIN(ctx, u.ID)
			if err != nil || p.Attempts != attempts || (p.ConsumedAt != nil) != used {
				t.Fatalf("PIN = %+v, %v; want %d attempts, used %v", p, err, attempts, used)
			}
		}

		alice := e.newUser(t, "alice")
		code, expires := startPIN(alice)
		checkAt(alice, expires.Add(-time.Nanosecond), wrongOf(code), app.ResultInvalid)
		checkAt(alice, expires, code, app.ResultExpired)
		checkAt(alice, expires, wrongOf(code), app.ResultExpired)
		wantAttempts(alice, 1, false)

		bob := e.newUser(t, "bob")
		code, expires = startPIN(bob)
		checkAt(bob, expires.Add(-time.Nanosecond), code, app.ResultVerified)
		wantAttempts(bob, 0, true)

		carol := e.newUser(t, "carol")
		code, expires = startPIN(carol)
		for range s.MaxAttempts {
			checkAt(carol, expires.Add(-time.Minute), wrongOf(code), app.ResultInvalid)
		}
		checkAt(carol, expires.Add(-time.Minute), code, app.ResultThrottled)
		checkAt(carol, expires.Add(-time.Minute), wrongOf(code), app.ResultThrottled)
		wantAttempts(carol, s.MaxAttempts, false)
	})
}

// recordingStore records the PIN checks the app asks of its store.
type recordingStore struct {
	verity.Store
	mu     sync.Mutex
	checks []verity.PINCheck
}

func (s *recordingStore) CheckPIN(ctx context.Context, c verity.PINCheck) (verity.PINChecked, error) {
	s.mu.Lock()
	s.checks = append(s.checks, c)
	s.mu.Unlock()
	return s.Store.CheckPIN(ctx, c)
}

// The app hands the store the typed code's hash for every check it judges
// against an SMS PIN under the store's conditions, so that PostgreSQL can
// check in one statement, and only for those.
func TestChecksCarryTheTypedCodesHash(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "verity.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	store := &recordingStore{Store: db}
	e := newEnvOn(t, store)
	ctx := context.Background()
	u := e.newUser(t, "alice")
	started, err := e.app.StartVerification(ctx, e.account, e.service.ID, u.ID, "sms")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		check    app.Check
		withHash bool
	}{
		{"the Verigator clients' check: a token alone", app.Check{Token: "111111"}, true},
		{"method sms", app.Check{Token: "222222", Method: "sms"}, true},
		{"method totp", app.Check{Token: "333333", Method: "totp"}, false},
		{"a named auth_id", app.Check{Token: "444444", AuthID: started.AuthID}, false},
	} {
		store.mu.Lock()
		store.checks = nil
		store.mu.Unlock()
		if _, err := e.app.CheckVerification(ctx, e.account, e.service.ID, u.ID, tc.check); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		store.mu.Lock()
		checks := store.checks
		store.mu.Unlock()
		if len(checks) == 0 {
			t.Fatalf("%s: no CheckPIN", tc.name)
		}
		want := []byte(nil)
		if tc.withHash {
			want = e.keys.PINHash(u.ID, tc.check.Token)
		}
		if got := checks[0].CodeHash; !bytes.Equal(got, want) {
			t.Errorf("%s: CodeHash = %x, want %x", tc.name, got, want)
		}
	}
}

// TestStoredHashesKeepTheirForm: every hash Verity stores or compares
// (PINs both ways, recovery codes, API credentials) is the HMAC-SHA256 the
// earlier releases computed with a fresh hmac.New per call, whatever the
// input's length and however many goroutines hash at once: the keyed
// instances are reused from a pool.
func TestStoredHashesKeepTheirForm(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	keys, err := app.NewKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	reference := func(label string, prefix []byte, msg string) []byte {
		keyMAC := hmac.New(sha256.New, master)
		keyMAC.Write([]byte(label))
		m := hmac.New(sha256.New, keyMAC.Sum(nil))
		m.Write([]byte(msg))
		return m.Sum(prefix)
	}
	long := string(bytes.Repeat([]byte("x"), 1400)) // beyond the pooled scratch space, which keeps at most 1 KiB
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				user, code := "u"+string(rune('a'+g))+long[:i*7], "123456"+long[:i%7]
				for _, c := range []struct {
					name      string
					got, want []byte
				}{
					{"PINHash", keys.PINHash(user, code), reference("verity pin hash v2", []byte{2}, user+"\x00"+code)},
					{"PINHashByPIN", keys.PINHashByPIN(user, code), reference("verity pin hash v1", nil, user+"\x00"+code)},
					{"RecoveryCodeHash", keys.RecoveryCodeHash(user, code), reference("verity recovery code v1", nil, user+"\x00"+code)},
					{"CredentialHash", keys.CredentialHash(code + user), reference("verity api credential v1", nil, code+user)},
				} {
					if !bytes.Equal(c.got, c.want) {
						t.Errorf("%s(%d-byte input) = %x, want %x", c.name, len(user)+len(code), c.got, c.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
