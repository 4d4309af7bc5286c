package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/verityhq/verity"
)

// copyAll moves every record from src to dst and counts inserts per kind.
func copyAll(t *testing.T, src, dst verity.Store) map[string]int {
	t.Helper()
	ctx := context.Background()
	from, ok1 := src.(verity.Copier)
	to, ok2 := dst.(verity.Copier)
	if !ok1 || !ok2 {
		t.Fatal("the store does not implement verity.Copier")
	}
	inserted := map[string]int{}
	err := from.Export(ctx, func(r verity.Record) error {
		ok, err := to.Import(ctx, r)
		if ok {
			inserted[r.Kind()]++
		}
		return err
	})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	return inserted
}

func testCopy(t *testing.T, open Open) {
	ctx := context.Background()
	src := newFixture(t, open)
	s := src.store

	settings := verity.DefaultSettings()
	settings.PINLength, settings.SenderName = 8, "Acme"
	if err := s.UpdateServiceSettings(ctx, src.service.ID, settings); err != nil {
		t.Fatal(err)
	}
	bob := mustUser(t, s, src.service, "bob")
	p := mustStart(t, s, src.user, t0) // a PIN in flight, which is not copied
	if ok, err := s.CountFailedTry(ctx, failAt(p, t0)); err != nil || !ok {
		t.Fatalf("CountFailedTry = %v, %v", ok, err)
	}
	if err := s.SetLastMethod(ctx, bob.ID, "totp"); err != nil {
		t.Fatal(err)
	}
	f := pendingFactor(bob, "k1")
	if err := s.PutPendingFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	codes := [][]byte{randomBytes(32), randomBytes(32)}
	mustActivate(t, s, f, 7, codes)
	if ok, err := s.UseRecoveryCode(ctx, recoveryUse(bob, codes[0])); err != nil || !ok {
		t.Fatalf("UseRecoveryCode = %v, %v", ok, err)
	}

	dst := openStore(t, open)
	got := copyAll(t, s, dst)
	want := map[string]int{"accounts": 1, "services": 1, "users": 2, "factors": 1, "recovery_codes": 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first copy inserted (-want +got):\n%s", diff)
	}

	t.Run("everything but PINs arrives unchanged", func(t *testing.T) {
		for _, u := range []*verity.User{src.user, bob} {
			a, _ := s.User(ctx, src.service.ID, u.ID)
			b, err := dst.User(ctx, src.service.ID, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(a, b); diff != "" {
				t.Fatalf("user mismatch (-src +dst):\n%s", diff)
			}
		}
		a, _ := s.Service(ctx, src.service.ID)
		b, err := dst.Service(ctx, src.service.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("service mismatch (-src +dst):\n%s", diff)
		}
		acct, err := dst.AccountByUsername(ctx, src.account.Username)
		if err != nil || !cmp.Equal(acct, src.account) {
			t.Fatalf("account = %+v, %v; want %+v", acct, err, src.account)
		}
		fa, _ := s.Factor(ctx, bob.ID)
		fb, err := dst.Factor(ctx, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(fa, fb); diff != "" {
			t.Fatalf("factor mismatch (-src +dst):\n%s", diff)
		}
		if n, _ := dst.RecoveryCodesLeft(ctx, bob.ID); n != 1 {
			t.Fatalf("recovery codes left = %d, want 1 (the used one stays used)", n)
		}
		if ok, _ := dst.UseRecoveryCode(ctx, recoveryUse(bob, codes[0])); ok {
			t.Fatal("a used recovery code became usable by the copy")
		}
		if ok, _ := dst.UseStep(ctx, verity.StepUse{FactorID: f.ID, UserID: bob.ID, Step: 7, Now: t0,
			FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 10}); ok {
			t.Fatal("the activation step became usable again by the copy")
		}
		_, err = dst.PendingPIN(ctx, src.user.ID)
		wantCode(t, "PendingPIN(copy)", err, verity.ENOTFOUND)
	})

	t.Run("copying again inserts nothing", func(t *testing.T) {
		if got := copyAll(t, s, dst); len(got) != 0 {
			t.Fatalf("second copy inserted %v, want nothing", got)
		}
	})
}
