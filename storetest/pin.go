package storetest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// consumeAt and failAt build the check-side requests with the default policy.
func consumeAt(p *verity.PIN, now time.Time) verity.PINConsume {
	s := verity.DefaultSettings()
	return verity.PINConsume{PINID: p.ID, UserID: p.UserID, Now: now, MaxAttempts: s.MaxAttempts,
		FailureWindowStart: now.Add(-s.FailureWindow()), FailureLimit: s.FailureLimit}
}

func failAt(p *verity.PIN, now time.Time) verity.FailedTry {
	s := verity.DefaultSettings()
	return verity.FailedTry{PINID: p.ID, UserID: p.UserID, Now: now, MaxAttempts: s.MaxAttempts,
		FailureWindowStart: now.Add(-s.FailureWindow()), FailureLimit: s.FailureLimit}
}

// checkAt builds a CheckPIN request with the default policy.
func checkAt(f *fixture, now time.Time, judge func(*verity.User, *verity.PIN) verity.PINVerdict) verity.PINCheck {
	s := verity.DefaultSettings()
	return verity.PINCheck{ServiceID: f.service.ID, UserID: f.user.ID, Judge: judge, Now: now,
		MaxAttempts: s.MaxAttempts, FailureWindowStart: now.Add(-s.FailureWindow()), FailureLimit: s.FailureLimit}
}

// always returns a judge that gives verdict v whatever it sees.
func always(v verity.PINVerdict) func(*verity.User, *verity.PIN) verity.PINVerdict {
	return func(*verity.User, *verity.PIN) verity.PINVerdict { return v }
}

func mustStart(t *testing.T, s verity.Store, u *verity.User, now time.Time) *verity.PIN {
	t.Helper()
	return mustStartPIN(t, s, startAt(u, now))
}

// mustStartPIN makes start and fails t unless the store started it.
func mustStartPIN(t *testing.T, s verity.Store, start verity.PINStart) *verity.PIN {
	t.Helper()
	st, err := s.StartPIN(context.Background(), start)
	if err != nil || !st.Started {
		t.Fatalf("StartPIN at %v = %v, %+v, %v; want started", start.PIN.CreatedAt, st.Started, st.Seen, err)
	}
	return &start.PIN
}

// readUser reads the fixture's user back.
func readUser(t *testing.T, f *fixture) *verity.User {
	t.Helper()
	u, err := f.store.User(context.Background(), f.service.ID, f.user.ID)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	return u
}

// readPIN reads the fixture's user's pending PIN back.
func readPIN(t *testing.T, f *fixture) *verity.PIN {
	t.Helper()
	p, err := f.store.PendingPIN(context.Background(), f.user.ID)
	if err != nil {
		t.Fatalf("PendingPIN: %v", err)
	}
	return p
}

func testPINs(t *testing.T, open Open) {
	ctx := context.Background()

	t.Run("CheckPIN shows the judge the user and its newest PIN and applies the verdict", func(t *testing.T) {
		f := newFixture(t, open)
		mustStart(t, f.store, f.user, t0)
		p := mustStart(t, f.store, f.user, t0.Add(31*time.Second))
		now := t0.Add(time.Minute)
		var seenUser *verity.User
		var seenPIN *verity.PIN
		out, err := f.store.CheckPIN(ctx, checkAt(f, now, func(u *verity.User, got *verity.PIN) verity.PINVerdict {
			seenUser, seenPIN = u, got
			return verity.LeaveAsIs
		}))
		if err != nil || out.Verdict != verity.LeaveAsIs || out.Applied {
			t.Fatalf("CheckPIN(leave as is) = %+v, %v", out, err)
		}
		if diff := cmp.Diff(p, seenPIN); diff != "" {
			t.Fatalf("the judge saw another PIN (-want +got):\n%s", diff)
		}
		if seenUser == nil || seenUser.ID != f.user.ID || out.User.ID != f.user.ID || out.PIN.ID != p.ID {
			t.Fatalf("the judge saw user %v; CheckPIN returned %v and PIN %v", seenUser, out.User, out.PIN)
		}

		out, err = f.store.CheckPIN(ctx, checkAt(f, now, always(verity.CountIt)))
		if err != nil || out.Verdict != verity.CountIt || !out.Applied {
			t.Fatalf("CheckPIN(count) = %+v, %v; want applied", out, err)
		}
		got := readPIN(t, f)
		u := readUser(t, f)
		if got.Attempts != 1 || u.FailureCount != 1 || !u.FailureWindowStart.Equal(now) {
			t.Fatalf("after a counted try: PIN attempts %d, user failures %d since %v; want 1, 1 since %v",
				got.Attempts, u.FailureCount, u.FailureWindowStart, now)
		}

		out, err = f.store.CheckPIN(ctx, checkAt(f, now, always(verity.ConsumeIt)))
		if err != nil || out.Verdict != verity.ConsumeIt || !out.Applied {
			t.Fatalf("CheckPIN(consume) = %+v, %v; want applied", out, err)
		}
		out, err = f.store.CheckPIN(ctx, checkAt(f, now, func(_ *verity.User, got *verity.PIN) verity.PINVerdict {
			if got.ConsumedAt == nil || !got.ConsumedAt.Equal(now) {
				t.Errorf("the judge saw ConsumedAt %v after the consume, want %v", got.ConsumedAt, now)
			}
			return verity.ConsumeIt
		}))
		if err != nil || out.Applied {
			t.Fatalf("a second consume = %+v, %v; want not applied", out, err)
		}
	})

	t.Run("CheckPIN applies nothing the conditions forbid", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		expired := p.ExpiresAt.Add(time.Second)
		for _, v := range []verity.PINVerdict{verity.ConsumeIt, verity.CountIt} {
			out, err := f.store.CheckPIN(ctx, checkAt(f, expired, always(v)))
			if err != nil || out.Applied {
				t.Fatalf("CheckPIN(%d) of an expired PIN = %+v, %v; want not applied", v, out, err)
			}
		}
		got := readPIN(t, f)
		u := readUser(t, f)
		if got.Attempts != 0 || got.ConsumedAt != nil || u.FailureCount != 0 {
			t.Fatalf("a refused verdict changed state: PIN %+v, user failures %d", got, u.FailureCount)
		}
		// A user whose failure budget is spent: the PIN has room, but a
		// try may not count against it alone.
		now := t0.Add(time.Second)
		for range 2 {
			if ok, err := f.store.CountFailedTry(ctx, failAt(p, now)); err != nil || !ok {
				t.Fatalf("CountFailedTry = %v, %v", ok, err)
			}
		}
		c := checkAt(f, now, always(verity.CountIt))
		c.FailureLimit = 2
		if out, err := f.store.CheckPIN(ctx, c); err != nil || out.Applied {
			t.Fatalf("CheckPIN(CountIt) of a locked-out user = %+v, %v; want not applied", out, err)
		}
		if got, err := f.store.PendingPIN(ctx, f.user.ID); err != nil || got.Attempts != 2 {
			t.Fatalf("PIN attempts = %d, %v after a refused count; want 2 (counted with the user or not at all)", got.Attempts, err)
		}
	})

	t.Run("CheckPIN of a user without a PIN, and of no such user", func(t *testing.T) {
		f := newFixture(t, open)
		out, err := f.store.CheckPIN(ctx, checkAt(f, t0, func(u *verity.User, p *verity.PIN) verity.PINVerdict {
			if p != nil {
				t.Errorf("the judge saw PIN %+v, want none", p)
			}
			return verity.CountIt
		}))
		if err != nil || out.PIN != nil || out.Applied || out.User.ID != f.user.ID {
			t.Fatalf("CheckPIN(no PIN) = %+v, %v; want the user, no PIN, nothing applied", out, err)
		}
		u := readUser(t, f)
		if u.FailureCount != 0 {
			t.Fatalf("a verdict without a PIN counted %d failures", u.FailureCount)
		}
		c := checkAt(f, t0, always(verity.LeaveAsIs))
		c.UserID = "no-such-user"
		_, err = f.store.CheckPIN(ctx, c)
		wantCode(t, "CheckPIN(no such user)", err, verity.ENOTFOUND)
		other := mustService(t, f.store, f.account, "Other")
		c = checkAt(f, t0, always(verity.LeaveAsIs))
		c.ServiceID = other.ID
		_, err = f.store.CheckPIN(ctx, c)
		wantCode(t, "CheckPIN(other service)", err, verity.ENOTFOUND)
	})

	t.Run("the newest PIN is pending and reads back exactly", func(t *testing.T) {
		f := newFixture(t, open)
		_, err := f.store.PendingPIN(ctx, f.user.ID)
		wantCode(t, "PendingPIN(none)", err, verity.ENOTFOUND)
		mustStart(t, f.store, f.user, t0)
		second := mustStart(t, f.store, f.user, t0.Add(31*time.Second))
		got, err := f.store.PendingPIN(ctx, f.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(second, got); diff != "" {
			t.Fatalf("PendingPIN mismatch (-want +got):\n%s", diff)
		}
		u, withPIN, err := f.store.UserWithPIN(ctx, f.service.ID, f.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(second, withPIN); diff != "" {
			t.Fatalf("UserWithPIN's PIN mismatch (-want +got):\n%s", diff)
		}
		want := *f.user // LastMethod stays "": SMS starts write it only over "totp"
		if diff := cmp.Diff(&want, u); diff != "" {
			t.Fatalf("UserWithPIN's user mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("a user without PINs reads back with none, and only through its service", func(t *testing.T) {
		f := newFixture(t, open)
		u, p, err := f.store.UserWithPIN(ctx, f.service.ID, f.user.ID)
		if err != nil || p != nil || u.ID != f.user.ID {
			t.Fatalf("UserWithPIN = %v, %v, %v; want the user and no PIN", u, p, err)
		}
		other := mustService(t, f.store, f.account, "Other")
		_, _, err = f.store.UserWithPIN(ctx, other.ID, f.user.ID)
		wantCode(t, "UserWithPIN(other service)", err, verity.ENOTFOUND)
	})

	t.Run("StartPIN returns the user it read, and only through its service", func(t *testing.T) {
		f := newFixture(t, open)
		st, err := f.store.StartPIN(ctx, startAt(f.user, t0))
		if err != nil || !st.Started {
			t.Fatalf("StartPIN = %+v, %v", st, err)
		}
		want := *f.user
		if diff := cmp.Diff(&want, st.User); diff != "" {
			t.Fatalf("StartPIN's user mismatch (-want +got):\n%s", diff)
		}
		refused, err := f.store.StartPIN(ctx, startAt(f.user, t0.Add(time.Second)))
		if err != nil || refused.Started || refused.User == nil || refused.User.ID != f.user.ID {
			t.Fatalf("refused StartPIN = %+v, %v; want the user and not started", refused, err)
		}
		other := mustService(t, f.store, f.account, "Other")
		s := startAt(f.user, t0.Add(time.Hour))
		s.ServiceID = other.ID
		_, err = f.store.StartPIN(ctx, s)
		wantCode(t, "StartPIN(other service)", err, verity.ENOTFOUND)
		s.ServiceID, s.PIN.UserID = f.service.ID, "no-such-user"
		_, err = f.store.StartPIN(ctx, s)
		wantCode(t, "StartPIN(no such user)", err, verity.ENOTFOUND)
		if got, err := f.store.PendingPIN(ctx, f.user.ID); err != nil || !got.CreatedAt.Equal(t0) {
			t.Fatalf("after refused starts, the pending PIN is %+v, %v; want the first one", got, err)
		}
	})

	t.Run("a second send inside the resend interval is refused with the history", func(t *testing.T) {
		f := newFixture(t, open)
		first := mustStart(t, f.store, f.user, t0)
		st, err := f.store.StartPIN(ctx, startAt(f.user, t0.Add(29*time.Second)))
		ok, seen := st.Started, st.Seen
		if err != nil || ok {
			t.Fatalf("StartPIN inside 30 s = %v, %v; want refused", ok, err)
		}
		want := verity.SendHistory{SendsInWindow: 1, OldestInWindow: first.CreatedAt, LastSent: first.CreatedAt}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Fatalf("SendHistory mismatch (-want +got):\n%s", diff)
		}
		got := readPIN(t, f)
		if got.ID != first.ID {
			t.Fatal("a refused start replaced the pending PIN")
		}
	})

	t.Run("a verified PIN lifts the resend interval", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		if ok, err := f.store.ConsumePIN(ctx, consumeAt(p, t0.Add(time.Second))); err != nil || !ok {
			t.Fatalf("ConsumePIN = %v, %v", ok, err)
		}
		mustStart(t, f.store, f.user, t0.Add(2*time.Second))
	})

	t.Run("at most MaxSends sends per window", func(t *testing.T) {
		f := newFixture(t, open)
		now := t0
		for range verity.DefaultSettings().MaxSends {
			mustStart(t, f.store, f.user, now)
			now = now.Add(31 * time.Second)
		}
		st, err := f.store.StartPIN(ctx, startAt(f.user, now))
		ok, seen := st.Started, st.Seen
		if err != nil || ok || seen.SendsInWindow != 5 || !seen.OldestInWindow.Equal(t0) {
			t.Fatalf("sixth StartPIN = %v, %+v, %v; want refused with 5 sends since t0", ok, seen, err)
		}
		mustStart(t, f.store, f.user, t0.Add(10*time.Minute+time.Microsecond)) // the first send left the window
	})

	t.Run("a failed delivery is aborted and refunded", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		other := mustUser(t, f.store, f.service, "mallory")
		if err := f.store.AbortPIN(ctx, other.ID, p.ID); err != nil {
			t.Fatal(err)
		}
		if got := readPIN(t, f); got.ID != p.ID {
			t.Fatalf("after an abort naming another user the pending PIN is %s, want %s", got.ID, p.ID)
		}
		if err := f.store.AbortPIN(ctx, f.user.ID, p.ID); err != nil {
			t.Fatal(err)
		}
		_, err := f.store.PendingPIN(ctx, f.user.ID)
		wantCode(t, "PendingPIN(after abort)", err, verity.ENOTFOUND)
		mustStart(t, f.store, f.user, t0.Add(time.Second)) // no resend interval applies
	})

	t.Run("a delivery that may have reached the phone ends its PIN and keeps its send", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		other := mustUser(t, f.store, f.service, "mallory")
		if err := f.store.ExpirePIN(ctx, other.ID, p.ID, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := readPIN(t, f); !got.ExpiresAt.Equal(p.ExpiresAt) {
			t.Fatalf("after an expiry naming another user the PIN expires at %v, want %v", got.ExpiresAt, p.ExpiresAt)
		}
		if err := f.store.ExpirePIN(ctx, f.user.ID, p.ID, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := readPIN(t, f); got.ID != p.ID || !got.ExpiresAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("after ExpirePIN the newest PIN is %s expiring at %v, want %s at %v", got.ID, got.ExpiresAt, p.ID, t0.Add(time.Second))
		}
		if err := f.store.ExpirePIN(ctx, f.user.ID, p.ID, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := readPIN(t, f); !got.ExpiresAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("a later ExpirePIN moved the expiry to %v, want it kept at %v", got.ExpiresAt, t0.Add(time.Second))
		}
		st, err := f.store.StartPIN(ctx, startAt(f.user, t0.Add(2*time.Second)))
		if err != nil || st.Started || st.Seen.SendsInWindow != 1 {
			t.Fatalf("StartPIN 2 s later = %v, %+v, %v; want refused, its send counted", st.Started, st.Seen, err)
		}

		used := mustStart(t, f.store, f.user, t0.Add(time.Minute))
		if ok, err := f.store.ConsumePIN(ctx, consumeAt(used, t0.Add(61*time.Second))); err != nil || !ok {
			t.Fatalf("ConsumePIN = %v, %v", ok, err)
		}
		if err := f.store.ExpirePIN(ctx, f.user.ID, used.ID, t0.Add(62*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := readPIN(t, f); !got.ExpiresAt.Equal(used.ExpiresAt) {
			t.Fatalf("ExpirePIN changed a used PIN's expiry to %v, want %v", got.ExpiresAt, used.ExpiresAt)
		}
	})

	t.Run("a PIN is consumed once", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		for i, want := range []bool{true, false} {
			if ok, err := f.store.ConsumePIN(ctx, consumeAt(p, t0.Add(time.Second))); err != nil || ok != want {
				t.Fatalf("ConsumePIN #%d = %v, %v; want %v", i+1, ok, err, want)
			}
		}
		got := readPIN(t, f)
		if got.ConsumedAt == nil || !got.ConsumedAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("ConsumedAt = %v, want %v", got.ConsumedAt, t0.Add(time.Second))
		}
	})

	t.Run("a wrong try counts against the PIN it names, also one a newer PIN replaced, and no other", func(t *testing.T) {
		f := newFixture(t, open)
		older := mustStart(t, f.store, f.user, t0)
		newer := mustStart(t, f.store, f.user, t0.Add(31*time.Second))
		if ok, err := f.store.CountFailedTry(ctx, failAt(older, t0.Add(32*time.Second))); err != nil || !ok {
			t.Fatalf("CountFailedTry of the replaced PIN = %v, %v; want counted", ok, err)
		}
		unknown := *newer
		unknown.ID = uuid.NewString()
		if ok, err := f.store.CountFailedTry(ctx, failAt(&unknown, t0.Add(32*time.Second))); err != nil || ok {
			t.Fatalf("CountFailedTry of no such PIN = %v, %v; want not counted", ok, err)
		}
		if got := readPIN(t, f); got.ID != newer.ID || got.Attempts != 0 {
			t.Fatalf("the newest PIN is %s with %d attempts; want %s untouched", got.ID, got.Attempts, newer.ID)
		}
		if ok, err := f.store.CountFailedTry(ctx, failAt(newer, t0.Add(33*time.Second))); err != nil || !ok {
			t.Fatalf("CountFailedTry of the newest PIN = %v, %v; want counted", ok, err)
		}
		if got := readPIN(t, f); got.Attempts != 1 {
			t.Fatalf("the newest PIN has %d attempts, want 1", got.Attempts)
		}
		if u := readUser(t, f); u.FailureCount != 2 {
			t.Fatalf("the user has %d failures, want the two counted tries", u.FailureCount)
		}
	})

	t.Run("a failure of a user who does not exist is not counted", func(t *testing.T) {
		f := newFixture(t, open)
		try := verity.FailedTry{UserID: uuid.NewString(), Now: t0,
			FailureWindowStart: t0.Add(-time.Hour), FailureLimit: verity.DefaultSettings().FailureLimit}
		if ok, err := f.store.CountFailedTry(ctx, try); err != nil || ok {
			t.Fatalf("CountFailedTry for no user = %v, %v; want false, nil", ok, err)
		}
	})

	t.Run("an expired, replaced or exhausted PIN is not consumed", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		if ok, _ := f.store.ConsumePIN(ctx, consumeAt(p, p.ExpiresAt)); ok {
			t.Fatal("ConsumePIN at expiry succeeded")
		}
		newer := mustStart(t, f.store, f.user, t0.Add(31*time.Second))
		if ok, _ := f.store.ConsumePIN(ctx, consumeAt(p, t0.Add(32*time.Second))); ok {
			t.Fatal("ConsumePIN of a replaced PIN succeeded")
		}
		for range verity.DefaultSettings().MaxAttempts {
			if ok, err := f.store.CountFailedTry(ctx, failAt(newer, t0.Add(40*time.Second))); err != nil || !ok {
				t.Fatalf("CountFailedTry = %v, %v", ok, err)
			}
		}
		if ok, _ := f.store.CountFailedTry(ctx, failAt(newer, t0.Add(40*time.Second))); ok {
			t.Fatal("CountFailedTry past MaxAttempts succeeded")
		}
		other := mustUser(t, f.store, f.service, "mallory")
		try := failAt(newer, t0.Add(40*time.Second))
		try.UserID = other.ID
		if ok, _ := f.store.CountFailedTry(ctx, try); ok {
			t.Fatal("CountFailedTry of another user's PIN succeeded")
		}
		if ok, _ := f.store.ConsumePIN(ctx, consumeAt(newer, t0.Add(41*time.Second))); ok {
			t.Fatal("ConsumePIN of an exhausted PIN succeeded")
		}
		got := readPIN(t, f)
		if got.Attempts != 5 {
			t.Fatalf("Attempts = %d, want 5", got.Attempts)
		}
	})

	t.Run("the user failure budget survives new PINs and locks consume and start", func(t *testing.T) {
		f := newFixture(t, open)
		now := t0
		for range 2 { // two PINs × 5 wrong tries = the default failure limit of 10
			p := mustStart(t, f.store, f.user, now)
			for range 5 {
				if ok, err := f.store.CountFailedTry(ctx, failAt(p, now)); err != nil || !ok {
					t.Fatalf("CountFailedTry = %v, %v", ok, err)
				}
			}
			now = now.Add(31 * time.Second)
		}
		u := readUser(t, f)
		if u.FailureCount != 10 || !u.FailureWindowStart.Equal(t0) {
			t.Fatalf("failures = %d since %v, want 10 since %v", u.FailureCount, u.FailureWindowStart, t0)
		}
		st, err := f.store.StartPIN(ctx, startAt(f.user, now))
		ok, seen := st.Started, st.Seen
		if err != nil || ok || seen.Failures != 10 {
			t.Fatalf("StartPIN while locked = %v, %+v, %v; want refused", ok, seen, err)
		}
		// A try without a PIN (an authenticator code) is refused too.
		try := verity.FailedTry{UserID: f.user.ID, Now: now, FailureWindowStart: now.Add(-time.Hour), FailureLimit: 10}
		if ok, _ := f.store.CountFailedTry(ctx, try); ok {
			t.Fatal("CountFailedTry while locked succeeded")
		}
		// Once the window has lapsed a failure opens a new window at 1.
		later := t0.Add(time.Hour + time.Second)
		try = verity.FailedTry{UserID: f.user.ID, Now: later, FailureWindowStart: later.Add(-time.Hour), FailureLimit: 10}
		if ok, err := f.store.CountFailedTry(ctx, try); err != nil || !ok {
			t.Fatalf("CountFailedTry after the window = %v, %v", ok, err)
		}
		u = readUser(t, f)
		if u.FailureCount != 1 || !u.FailureWindowStart.Equal(later) {
			t.Fatalf("failures = %d since %v, want 1 since %v", u.FailureCount, u.FailureWindowStart, later)
		}
	})

	t.Run("a wrong PIN try after the failure window lapsed opens a new window at 1", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		for range 3 {
			if ok, err := f.store.CountFailedTry(ctx, failAt(p, t0)); err != nil || !ok {
				t.Fatalf("CountFailedTry = %v, %v", ok, err)
			}
		}
		later := t0.Add(verity.DefaultSettings().FailureWindow() + time.Second)
		p = mustStart(t, f.store, f.user, later)
		if ok, err := f.store.CountFailedTry(ctx, failAt(p, later)); err != nil || !ok {
			t.Fatalf("CountFailedTry after the window = %v, %v", ok, err)
		}
		u := readUser(t, f)
		if u.FailureCount != 1 || !u.FailureWindowStart.Equal(later) {
			t.Fatalf("failures = %d since %v, want 1 since %v", u.FailureCount, u.FailureWindowStart, later)
		}
		if pending, err := f.store.PendingPIN(ctx, f.user.ID); err != nil || pending.Attempts != 1 {
			t.Fatalf("PendingPIN = %+v, %v; want 1 attempt", pending, err)
		}
	})

	t.Run("a start prunes the user's sends older than the send window, and only those", func(t *testing.T) {
		f := newFixture(t, open)
		window := verity.DefaultSettings().SendWindow()
		mustStart(t, f.store, f.user, t0)
		mustStart(t, f.store, f.user, t0.Add(window/2))
		t1 := t0.Add(window + time.Second) // the first send has left the window, the second not
		mustStart(t, f.store, f.user, t1)
		n, err := f.store.DeletePINsBefore(ctx, t1)
		if err != nil || n != 1 {
			t.Fatalf("after the start at t1, DeletePINsBefore(t1) = %d, %v; want 1 (only the send still inside the window was left)", n, err)
		}
		if p, err := f.store.PendingPIN(ctx, f.user.ID); err != nil || !p.CreatedAt.Equal(t1) {
			t.Fatalf("PendingPIN = %+v, %v; want the PIN sent at t1", p, err)
		}
	})

	t.Run("old history is deleted", func(t *testing.T) {
		f := newFixture(t, open)
		mustStart(t, f.store, f.user, t0)
		n, err := f.store.DeletePINsBefore(ctx, t0.Add(time.Microsecond))
		if err != nil || n != 1 {
			t.Fatalf("DeletePINsBefore = %d, %v; want 1", n, err)
		}
		_, err = f.store.PendingPIN(ctx, f.user.ID)
		wantCode(t, "PendingPIN(after cleanup)", err, verity.ENOTFOUND)
	})
}

func testPINConcurrency(t *testing.T, open Open) {
	ctx := context.Background()

	t.Run("of 100 concurrent checks of one right code exactly one consumes", func(t *testing.T) {
		f := newFixture(t, open)
		mustStart(t, f.store, f.user, t0)
		gate := judgeGate(100, 2*time.Millisecond)
		wins := parallel(t, 100, func(int) (bool, error) {
			out, err := f.store.CheckPIN(ctx, checkAt(f, t0.Add(time.Second), func(_ *verity.User, p *verity.PIN) verity.PINVerdict {
				gate()
				if p.ConsumedAt != nil {
					return verity.LeaveAsIs // as the app judges a used PIN
				}
				return verity.ConsumeIt
			}))
			return out.Verdict == verity.ConsumeIt && out.Applied, err
		})
		if wins != 1 {
			t.Fatalf("%d checks consumed the PIN, want exactly 1", wins)
		}
	})

	t.Run("of 200 concurrent checks of a wrong code exactly MaxAttempts count", func(t *testing.T) {
		f := newFixture(t, open)
		mustStart(t, f.store, f.user, t0)
		maxAttempts := verity.DefaultSettings().MaxAttempts
		gate := judgeGate(200, time.Millisecond)
		counted := parallel(t, 200, func(int) (bool, error) {
			out, err := f.store.CheckPIN(ctx, checkAt(f, t0.Add(time.Second), func(_ *verity.User, p *verity.PIN) verity.PINVerdict {
				gate()
				if p.Attempts >= maxAttempts {
					return verity.LeaveAsIs // as the app judges a locked PIN
				}
				return verity.CountIt
			}))
			return out.Verdict == verity.CountIt && out.Applied, err
		})
		if counted != maxAttempts {
			t.Fatalf("%d wrong tries counted, want exactly %d", counted, maxAttempts)
		}
		u := readUser(t, f)
		if u.FailureCount != counted {
			t.Fatalf("user failures = %d, want %d (counted with the PIN, atomically)", u.FailureCount, counted)
		}
	})

	t.Run("of 100 concurrent consumes of one PIN exactly one wins", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		wins := parallel(t, 100, func(int) (bool, error) {
			return f.store.ConsumePIN(ctx, consumeAt(p, t0.Add(time.Second)))
		})
		if wins != 1 {
			t.Fatalf("%d consumes won, want exactly 1", wins)
		}
	})

	t.Run("of 200 concurrent wrong tries exactly MaxAttempts count", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		counted := parallel(t, 200, func(int) (bool, error) {
			return f.store.CountFailedTry(ctx, failAt(p, t0.Add(time.Second)))
		})
		if want := verity.DefaultSettings().MaxAttempts; counted != want {
			t.Fatalf("%d wrong tries counted, want exactly %d", counted, want)
		}
		u := readUser(t, f)
		if u.FailureCount != counted {
			t.Fatalf("user failures = %d, want %d (counted with the PIN, atomically)", u.FailureCount, counted)
		}
	})

	t.Run("concurrent wrong tries, with a PIN and without, never pass the user's failure limit", func(t *testing.T) {
		f := newFixture(t, open)
		p := mustStart(t, f.store, f.user, t0)
		const limit = 5
		var pinCounted atomic.Int32
		counted := parallel(t, 100, func(i int) (bool, error) {
			try := failAt(p, t0.Add(time.Second))
			try.MaxAttempts, try.FailureLimit = 1<<20, limit // only the user's budget limits here
			if i%2 == 1 {
				try.PINID = "" // an authenticator app's wrong code
			}
			ok, err := f.store.CountFailedTry(ctx, try)
			if ok && try.PINID != "" {
				pinCounted.Add(1)
			}
			return ok, err
		})
		if counted != limit {
			t.Fatalf("%d wrong tries counted, want exactly the failure limit, %d", counted, limit)
		}
		u := readUser(t, f)
		pending, err := f.store.PendingPIN(ctx, f.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if u.FailureCount != limit || pending.Attempts != int(pinCounted.Load()) {
			t.Fatalf("user failures = %d, PIN attempts = %d; want %d and %d (the PIN tries counted)",
				u.FailureCount, pending.Attempts, limit, pinCounted.Load())
		}
	})

	t.Run("of 50 concurrent starts exactly one passes the resend interval", func(t *testing.T) {
		f := newFixture(t, open)
		started := parallel(t, 50, func(int) (bool, error) {
			st, err := f.store.StartPIN(ctx, startAt(f.user, t0))
			return st.Started, err
		})
		if started != 1 {
			t.Fatalf("%d starts passed, want exactly 1", started)
		}
	})

	t.Run("concurrent starts never pass MaxSends", func(t *testing.T) {
		f := newFixture(t, open)
		started := parallel(t, 50, func(i int) (bool, error) {
			s := startAt(f.user, t0)
			s.ResendNotBefore = t0.Add(time.Hour) // only MaxSends limits here
			st, err := f.store.StartPIN(ctx, s)
			return st.Started, err
		})
		if want := verity.DefaultSettings().MaxSends; started != want {
			t.Fatalf("%d starts passed, want exactly %d", started, want)
		}
	})
}
