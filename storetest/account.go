package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

func testAccounts(t *testing.T, open Open) {
	ctx := context.Background()
	s := openStore(t, open)
	a := mustAccount(t, s, "acme")

	t.Run("an account reads back exactly, times to the microsecond", func(t *testing.T) {
		got, err := s.AccountByUsername(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Fatalf("AccountByUsername mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("a taken username conflicts", func(t *testing.T) {
		err := s.CreateAccount(ctx, &verity.Account{ID: uuid.NewString(), Username: "acme", SecretHash: []byte{1}, CreatedAt: t0})
		wantCode(t, "CreateAccount(duplicate)", err, verity.ECONFLICT)
	})
	t.Run("an unknown username is not found", func(t *testing.T) {
		_, err := s.AccountByUsername(ctx, "nobody")
		wantCode(t, "AccountByUsername(unknown)", err, verity.ENOTFOUND)
	})
	t.Run("accounts list by username", func(t *testing.T) {
		mustAccount(t, s, "beta")
		list, err := s.ListAccounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Username != "acme" || list[1].Username != "beta" {
			t.Fatalf("ListAccounts = %v, want acme, beta", list)
		}
	})
	t.Run("an account with services cannot be deleted, one without can", func(t *testing.T) {
		svc := mustService(t, s, a, "S")
		wantCode(t, "DeleteAccount(with services)", s.DeleteAccount(ctx, "acme"), verity.ECONFLICT)
		if err := s.DeleteService(ctx, svc.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteAccount(ctx, "acme"); err != nil {
			t.Fatalf("DeleteAccount = %v", err)
		}
		wantCode(t, "DeleteAccount(again)", s.DeleteAccount(ctx, "acme"), verity.ENOTFOUND)
	})
}

func testServices(t *testing.T, open Open) {
	ctx := context.Background()
	f := newFixture(t, open)
	s := f.store

	t.Run("a service reads back with its settings", func(t *testing.T) {
		got, err := s.Service(ctx, f.service.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f.service, got); diff != "" {
			t.Fatalf("Service mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("a name is unique within an account only", func(t *testing.T) {
		dup := &verity.Service{ID: uuid.NewString(), AccountID: f.account.ID, Name: "Acme", FQDN: "x", Settings: verity.DefaultSettings(), CreatedAt: t0}
		wantCode(t, "CreateService(duplicate name)", s.CreateService(ctx, dup), verity.ECONFLICT)
		other := mustAccount(t, s, "other")
		mustService(t, s, other, "Acme")
	})
	t.Run("settings update", func(t *testing.T) {
		settings := verity.DefaultSettings()
		settings.PINLength, settings.MessageTemplate = 8, "Code <PIN>"
		if err := s.UpdateServiceSettings(ctx, f.service.ID, settings); err != nil {
			t.Fatal(err)
		}
		got, err := s.Service(ctx, f.service.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(settings, got.Settings); diff != "" {
			t.Fatalf("settings mismatch (-want +got):\n%s", diff)
		}
		wantCode(t, "UpdateServiceSettings(unknown)", s.UpdateServiceSettings(ctx, uuid.NewString(), settings), verity.ENOTFOUND)
	})
	t.Run("a service with users cannot be deleted", func(t *testing.T) {
		wantCode(t, "DeleteService(with users)", s.DeleteService(ctx, f.service.ID), verity.ECONFLICT)
		if err := s.DeleteUser(ctx, f.service.ID, f.user.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteService(ctx, f.service.ID); err != nil {
			t.Fatalf("DeleteService = %v", err)
		}
		_, err := s.Service(ctx, f.service.ID)
		wantCode(t, "Service(deleted)", err, verity.ENOTFOUND)
		wantCode(t, "DeleteService(again)", s.DeleteService(ctx, f.service.ID), verity.ENOTFOUND)
	})
}

func testUsers(t *testing.T, open Open) {
	ctx := context.Background()
	f := newFixture(t, open)
	s := f.store

	t.Run("a user reads back exactly", func(t *testing.T) {
		got, err := s.User(ctx, f.service.ID, f.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(f.user, got); diff != "" {
			t.Fatalf("User mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("a user is found only through its own service", func(t *testing.T) {
		other := mustService(t, s, f.account, "Other")
		_, err := s.User(ctx, other.ID, f.user.ID)
		wantCode(t, "User(other service)", err, verity.ENOTFOUND)
		wantCode(t, "DeleteUser(other service)", s.DeleteUser(ctx, other.ID, f.user.ID), verity.ENOTFOUND)
		mustUser(t, s, other, "alice") // the same id_in_service in another service is fine
	})
	t.Run("id_in_service is unique within a service", func(t *testing.T) {
		dup := &verity.User{ID: uuid.NewString(), ServiceID: f.service.ID, IDInService: "alice", Phone: "+3725555555", CreatedAt: t0}
		wantCode(t, "CreateUser(duplicate)", s.CreateUser(ctx, dup), verity.ECONFLICT)
	})
	t.Run("a user of an unknown service is refused", func(t *testing.T) {
		u := &verity.User{ID: uuid.NewString(), ServiceID: uuid.NewString(), IDInService: "x", Phone: "+3725555555", CreatedAt: t0}
		if err := s.CreateUser(ctx, u); err == nil {
			t.Fatal("CreateUser(unknown service) succeeded")
		}
	})
	t.Run("users list in creation order with a limit and the full total", func(t *testing.T) {
		svc := mustService(t, s, f.account, "Listing")
		var want []string
		for i := range 5 {
			u := mustUser(t, s, svc, string(rune('e'-i))) // names sort opposite to creation
			want = append(want, u.ID)
		}
		users, total, err := s.ListUsers(ctx, svc.ID, 3)
		if err != nil {
			t.Fatal(err)
		}
		if total != 5 || len(users) != 3 {
			t.Fatalf("ListUsers(limit 3) = %d users, total %d; want 3, 5", len(users), total)
		}
		for i, u := range users {
			if u.ID != want[i] {
				t.Fatalf("ListUsers[%d] = %s, want %s (creation order)", i, u.ID, want[i])
			}
		}
		users, total, err = s.ListUsers(ctx, uuid.NewString(), 10)
		if err != nil || total != 0 || len(users) != 0 {
			t.Fatalf("ListUsers(unknown service) = %v, %d, %v; want empty", users, total, err)
		}
	})
	t.Run("a batch of users is inserted whole, in order, or not at all", func(t *testing.T) {
		svc := mustService(t, s, f.account, "Bulk")
		batch := func(names ...string) []*verity.User {
			var out []*verity.User
			for _, n := range names {
				out = append(out, &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: n,
					Phone: "+3725555555", PhoneType: "MOBILE", CreatedAt: t0})
			}
			return out
		}
		first := batch("z", "y", "x")
		if err := s.CreateUsers(ctx, first); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "CreateUsers(duplicate of a stored user)", s.CreateUsers(ctx, batch("w", "x")), verity.ECONFLICT)
		wantCode(t, "CreateUsers(duplicate inside the batch)", s.CreateUsers(ctx, batch("v", "v")), verity.ECONFLICT)
		users, total, err := s.ListUsers(ctx, svc.ID, 10)
		if err != nil {
			t.Fatal(err)
		}
		if total != 3 {
			t.Fatalf("%d users after two refused batches, want the first batch's 3", total)
		}
		for i, u := range users {
			if diff := cmp.Diff(first[i], u); diff != "" {
				t.Fatalf("user %d mismatch (-want +got):\n%s", i, diff)
			}
		}
	})
	t.Run("last method is recorded", func(t *testing.T) {
		if err := s.SetLastMethod(ctx, f.user.ID, "totp"); err != nil {
			t.Fatal(err)
		}
		got, err := s.User(ctx, f.service.ID, f.user.ID)
		if err != nil || got.LastMethod != "totp" {
			t.Fatalf("User.LastMethod = %q, %v; want totp", got.LastMethod, err)
		}
		wantCode(t, "SetLastMethod(unknown)", s.SetLastMethod(ctx, uuid.NewString(), "sms"), verity.ENOTFOUND)
	})
	t.Run("a user's first SMS starts leave the last method empty", func(t *testing.T) {
		// "" means "not the app", as "sms" does: a start writes the user's
		// row only to undo "totp".
		u := mustUser(t, s, f.service, "first-starts")
		for i, at := range []time.Time{t0, t0.Add(2 * time.Minute)} {
			st, err := s.StartPIN(ctx, startAt(u, at))
			if err != nil || !st.Started || st.User.LastMethod != "" {
				t.Fatalf("StartPIN %d = %+v, %v; want started with LastMethod \"\"", i, st, err)
			}
			if got, err := s.User(ctx, f.service.ID, u.ID); err != nil || got.LastMethod != "" {
				t.Fatalf("after StartPIN %d, User.LastMethod = %q, %v; want \"\"", i, got.LastMethod, err)
			}
		}
	})
	t.Run("a started PIN records sms as the last method, a refused start does not", func(t *testing.T) {
		u := mustUser(t, s, f.service, "switcher")
		if err := s.SetLastMethod(ctx, u.ID, "totp"); err != nil {
			t.Fatal(err)
		}
		if st, err := s.StartPIN(ctx, startAt(u, t0)); err != nil || !st.Started {
			t.Fatalf("StartPIN = %+v, %v", st, err)
		}
		if got, err := s.User(ctx, f.service.ID, u.ID); err != nil || got.LastMethod != "sms" {
			t.Fatalf("after StartPIN, User.LastMethod = %q, %v; want sms", got.LastMethod, err)
		}
		if err := s.SetLastMethod(ctx, u.ID, "totp"); err != nil {
			t.Fatal(err)
		}
		// Inside the resend interval: refused, and nothing changes.
		if st, err := s.StartPIN(ctx, startAt(u, t0.Add(time.Second))); err != nil || st.Started {
			t.Fatalf("StartPIN inside the resend interval = %+v, %v; want refused", st, err)
		}
		if got, err := s.User(ctx, f.service.ID, u.ID); err != nil || got.LastMethod != "totp" {
			t.Fatalf("after a refused StartPIN, User.LastMethod = %q, %v; want totp", got.LastMethod, err)
		}
	})
	t.Run("deleting a user deletes its PINs", func(t *testing.T) {
		u := mustUser(t, s, f.service, "doomed")
		if st, err := s.StartPIN(ctx, startAt(u, t0)); err != nil || !st.Started {
			t.Fatalf("StartPIN = %+v, %v", st, err)
		}
		if err := s.DeleteUser(ctx, f.service.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		_, err := s.PendingPIN(ctx, u.ID)
		wantCode(t, "PendingPIN(deleted user)", err, verity.ENOTFOUND)
		_, err = s.User(ctx, f.service.ID, u.ID)
		wantCode(t, "User(deleted)", err, verity.ENOTFOUND)
	})
}

// startAt builds a PINStart at now with the default policy's limits.
// StartAt is a start of a new PIN (random id and hash) for u at now, under
// the default settings' limits: for the stores' own tests as well.
func StartAt(u *verity.User, now time.Time) verity.PINStart { return startAt(u, now) }

func startAt(u *verity.User, now time.Time) verity.PINStart {
	p := verity.DefaultSettings()
	return verity.PINStart{
		ServiceID: u.ServiceID,
		PIN: verity.PIN{ID: uuid.NewString(), UserID: u.ID, Hash: randomBytes(32),
			CreatedAt: now, ExpiresAt: now.Add(p.PINValidity())},
		SendWindowStart:    now.Add(-p.SendWindow()),
		MaxSends:           p.MaxSends,
		ResendNotBefore:    now.Add(-p.ResendInterval()),
		FailureWindowStart: now.Add(-p.FailureWindow()),
		FailureLimit:       p.FailureLimit,
	}
}
