package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

func pendingFactor(u *verity.User, keyID string) *verity.Factor {
	return &verity.Factor{ID: uuid.NewString(), UserID: u.ID, Status: verity.FactorPending, KeyID: keyID,
		Secret: randomBytes(48), Algorithm: "SHA1", Digits: 6, Period: 30, CreatedAt: t0}
}

func mustActivate(t *testing.T, s verity.Store, f *verity.Factor, step int64, codes [][]byte) {
	t.Helper()
	ok, err := s.ActivateFactor(context.Background(), verity.FactorActivation{
		FactorID: f.ID, UserID: f.UserID, Step: step, Now: t0, RecoveryCodes: codes})
	if err != nil || !ok {
		t.Fatalf("ActivateFactor = %v, %v", ok, err)
	}
}

// mustActiveApp gives the fixture's user an app, active at step.
func mustActiveApp(t *testing.T, fx *fixture, step int64) *verity.Factor {
	t.Helper()
	f := pendingFactor(fx.user, "k1")
	if err := fx.store.PutPendingFactor(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	mustActivate(t, fx.store, f, step, nil)
	return f
}

func stepUse(f *verity.Factor, step int64) verity.StepUse {
	return verity.StepUse{FactorID: f.ID, UserID: f.UserID, Step: step, Now: t0,
		FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 10}
}

func recoveryUse(u *verity.User, hash []byte) verity.RecoveryUse {
	return verity.RecoveryUse{UserID: u.ID, Hash: hash, Now: t0, FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 10}
}

func testFactors(t *testing.T, open Open) {
	ctx := context.Background()

	t.Run("a pending factor reads back, and starting again replaces it", func(t *testing.T) {
		fx := newFixture(t, open)
		_, err := fx.store.Factor(ctx, fx.user.ID)
		wantCode(t, "Factor(none)", err, verity.ENOTFOUND)
		first := pendingFactor(fx.user, "k1")
		if err := fx.store.PutPendingFactor(ctx, first); err != nil {
			t.Fatal(err)
		}
		second := pendingFactor(fx.user, "k1")
		if err := fx.store.PutPendingFactor(ctx, second); err != nil {
			t.Fatal(err)
		}
		got, err := fx.store.Factor(ctx, fx.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(second, got); diff != "" {
			t.Fatalf("Factor mismatch (-want +got):\n%s", diff)
		}
		if ok, _ := fx.store.ActivateFactor(ctx, verity.FactorActivation{FactorID: first.ID, UserID: fx.user.ID, Step: 1, Now: t0}); ok {
			t.Fatal("the replaced pending factor was activated")
		}
	})

	t.Run("an active factor blocks a new enrolment until deleted", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		if err := fx.store.PutPendingFactor(ctx, f); err != nil {
			t.Fatal(err)
		}
		mustActivate(t, fx.store, f, 100, [][]byte{{1}, {2}})
		got, _ := fx.store.Factor(ctx, fx.user.ID)
		if got.Status != verity.FactorActive || got.LastStep != 100 || !got.ActivatedAt.Equal(t0) {
			t.Fatalf("after activation: %+v", got)
		}
		wantCode(t, "PutPendingFactor(active)", fx.store.PutPendingFactor(ctx, pendingFactor(fx.user, "k1")), verity.ECONFLICT)
		if ok, _ := fx.store.ActivateFactor(ctx, verity.FactorActivation{FactorID: f.ID, UserID: fx.user.ID, Step: 101, Now: t0}); ok {
			t.Fatal("an active factor was activated twice")
		}
		if err := fx.store.DeleteFactor(ctx, fx.user.ID); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "DeleteFactor(again)", fx.store.DeleteFactor(ctx, fx.user.ID), verity.ENOTFOUND)
		if n, _ := fx.store.RecoveryCodesLeft(ctx, fx.user.ID); n != 0 {
			t.Fatalf("recovery codes left after delete = %d, want 0", n)
		}
		// Re-enrolling starts clean: the old used steps do not block the new factor.
		g := pendingFactor(fx.user, "k1")
		if err := fx.store.PutPendingFactor(ctx, g); err != nil {
			t.Fatal(err)
		}
		mustActivate(t, fx.store, g, 100, nil)
	})

	t.Run("a step is used once and never an earlier one", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		if ok, _ := fx.store.UseStep(ctx, stepUse(f, 99)); ok {
			t.Fatal("UseStep on a pending factor succeeded")
		}
		mustActivate(t, fx.store, f, 100, nil)
		for _, c := range []struct {
			step int64
			want bool
		}{{100, false}, {101, true}, {101, false}, {100, false}, {103, true}, {102, false}} {
			if ok, err := fx.store.UseStep(ctx, stepUse(f, c.step)); err != nil || ok != c.want {
				t.Fatalf("UseStep(%d) = %v, %v; want %v", c.step, ok, err, c.want)
			}
		}
	})

	t.Run("a recovery code is used once", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		codes := [][]byte{randomBytes(32), randomBytes(32), randomBytes(32)}
		mustActivate(t, fx.store, f, 1, codes)
		if n, _ := fx.store.RecoveryCodesLeft(ctx, fx.user.ID); n != 3 {
			t.Fatalf("RecoveryCodesLeft = %d, want 3", n)
		}
		for i, want := range []bool{true, false} {
			if ok, err := fx.store.UseRecoveryCode(ctx, recoveryUse(fx.user, codes[1])); err != nil || ok != want {
				t.Fatalf("UseRecoveryCode #%d = %v, %v; want %v", i+1, ok, err, want)
			}
		}
		if ok, _ := fx.store.UseRecoveryCode(ctx, recoveryUse(fx.user, randomBytes(32))); ok {
			t.Fatal("an unknown recovery code was accepted")
		}
		other := mustUser(t, fx.store, fx.service, "bob")
		if ok, _ := fx.store.UseRecoveryCode(ctx, recoveryUse(other, codes[0])); ok {
			t.Fatal("another user's recovery code was accepted")
		}
		if n, _ := fx.store.RecoveryCodesLeft(ctx, fx.user.ID); n != 2 {
			t.Fatalf("RecoveryCodesLeft = %d, want 2", n)
		}
		for _, c := range []struct {
			name string
			user *verity.User
			hash []byte
			want bool
		}{
			{"the used code", fx.user, codes[1], true},
			{"an unused code", fx.user, codes[0], false},
			{"an unknown code", fx.user, randomBytes(32), false},
			{"the used code, for another user", other, codes[1], false},
		} {
			if used, err := fx.store.RecoveryCodeUsed(ctx, c.user.ID, c.hash); err != nil || used != c.want {
				t.Fatalf("RecoveryCodeUsed(%s) = %v, %v; want %v", c.name, used, err, c.want)
			}
		}
	})

	t.Run("a locked-out user can use neither a step nor a recovery code", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		code := randomBytes(32)
		mustActivate(t, fx.store, f, 1, [][]byte{code})
		for range 10 {
			try := verity.FailedTry{UserID: fx.user.ID, Now: t0, FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 10}
			if ok, err := fx.store.CountFailedTry(ctx, try); err != nil || !ok {
				t.Fatalf("CountFailedTry = %v, %v", ok, err)
			}
		}
		if ok, _ := fx.store.UseStep(ctx, stepUse(f, 5)); ok {
			t.Fatal("UseStep while locked out succeeded")
		}
		if ok, _ := fx.store.UseRecoveryCode(ctx, recoveryUse(fx.user, code)); ok {
			t.Fatal("UseRecoveryCode while locked out succeeded")
		}
	})

	t.Run("rekeying swaps only factors still under the old key", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		bob := mustUser(t, fx.store, fx.service, "bob")
		g := pendingFactor(bob, "k2")
		fx.store.PutPendingFactor(ctx, g)
		list, err := fx.store.FactorsNotUnderKey(ctx, "k2", 10)
		if err != nil || len(list) != 1 || list[0].ID != f.ID {
			t.Fatalf("FactorsNotUnderKey(k2) = %v, %v; want only %s", list, err, f.ID)
		}
		sealed := randomBytes(48)
		if ok, err := fx.store.RekeyFactor(ctx, f.ID, "k1", "k2", sealed); err != nil || !ok {
			t.Fatalf("RekeyFactor = %v, %v", ok, err)
		}
		if ok, _ := fx.store.RekeyFactor(ctx, f.ID, "k1", "k2", randomBytes(48)); ok {
			t.Fatal("RekeyFactor from a key the factor is no longer under succeeded")
		}
		got, _ := fx.store.Factor(ctx, fx.user.ID)
		if got.KeyID != "k2" || !cmp.Equal(got.Secret, sealed) {
			t.Fatalf("after rekey: key %q", got.KeyID)
		}
		if list, _ := fx.store.FactorsNotUnderKey(ctx, "k2", 10); len(list) != 0 {
			t.Fatalf("FactorsNotUnderKey after rotation = %d factors, want 0", len(list))
		}
	})
}

func testFactorsInChecks(t *testing.T, open Open) {
	ctx := context.Background()
	t.Run("a check left to the app returns the user's active factor, read with it", func(t *testing.T) {
		fx := newFixture(t, open)
		toApp := checkAt(fx, t0, always(verity.ToTheApp))
		out, err := fx.store.CheckPIN(ctx, toApp)
		if err != nil || out.Factor != nil || out.Verdict != verity.ToTheApp || out.Applied {
			t.Fatalf("CheckPIN(to the app, no factor) = %+v, %v; want no factor", out, err)
		}
		f := pendingFactor(fx.user, "k1")
		if err := fx.store.PutPendingFactor(ctx, f); err != nil {
			t.Fatal(err)
		}
		if out, err := fx.store.CheckPIN(ctx, toApp); err != nil || out.Factor != nil {
			t.Fatalf("CheckPIN(to the app, pending factor) = %+v, %v; want no factor", out, err)
		}
		mustActivate(t, fx.store, f, 7, nil)
		out, err = fx.store.CheckPIN(ctx, toApp)
		if err != nil || out.Factor == nil || out.Factor.ID != f.ID || out.Factor.Status != verity.FactorActive || out.Factor.LastStep != 7 {
			t.Fatalf("CheckPIN(to the app, active factor) = %+v (factor %+v), %v; want the active factor at step 7", out, out.Factor, err)
		}
		if out, err := fx.store.CheckPIN(ctx, checkAt(fx, t0, always(verity.LeaveAsIs))); err != nil || out.Factor != nil {
			t.Fatalf("CheckPIN(leave as is) = %+v, %v; want no factor read", out, err)
		}
		if u := readUser(t, fx); u.FailureCount != 0 {
			t.Fatalf("checks left to the app counted %d failures", u.FailureCount)
		}
	})

	t.Run("the app's verdict is applied in the same operation", func(t *testing.T) {
		fx := newFixture(t, open)
		f := mustActiveApp(t, fx, 7)
		check := func(v verity.PINVerdict, step int64) verity.PINChecked {
			t.Helper()
			c := checkAt(fx, t0, always(verity.ToTheApp))
			c.JudgeApp = func(u *verity.User, got *verity.Factor) (verity.PINVerdict, int64) {
				if u.ID != fx.user.ID || got.ID != f.ID {
					t.Errorf("JudgeApp saw user %s and factor %s", u.ID, got.ID)
				}
				return v, step
			}
			out, err := fx.store.CheckPIN(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		if out := check(verity.UseStepIt, 8); out.AppVerdict != verity.UseStepIt || out.Step != 8 || !out.Applied {
			t.Fatalf("UseStepIt(8) = %+v, want applied", out)
		}
		if got, err := fx.store.Factor(ctx, fx.user.ID); err != nil {
			t.Fatalf("Factor: %v", err)
		} else if got.LastStep != 8 {
			t.Fatalf("last step = %d after using step 8", got.LastStep)
		}
		for _, step := range []int64{8, 7} {
			if out := check(verity.UseStepIt, step); out.Applied {
				t.Fatalf("UseStepIt(%d) after step 8 = %+v, want refused", step, out)
			}
		}
		if out := check(verity.CountIt, 0); !out.Applied {
			t.Fatalf("CountIt = %+v, want applied", out)
		}
		if out := check(verity.LeaveAsIs, 0); out.Applied {
			t.Fatalf("LeaveAsIs = %+v, want nothing applied", out)
		}
		if u := readUser(t, fx); u.FailureCount != 1 {
			t.Fatalf("user failures = %d, want the one wrong app code", u.FailureCount)
		}
		// With a failure limit of 1, which that failure reached, the next
		// wrong code is refused: not counted, and not an error.
		c := checkAt(fx, t0, always(verity.ToTheApp))
		c.FailureLimit = 1
		c.JudgeApp = func(*verity.User, *verity.Factor) (verity.PINVerdict, int64) { return verity.CountIt, 0 }
		if out, err := fx.store.CheckPIN(ctx, c); err != nil || out.Applied {
			t.Fatalf("CountIt while locked out = %+v, %v; want refused without an error", out, err)
		}
		if u, err := fx.store.User(ctx, fx.service.ID, fx.user.ID); err != nil || u.FailureCount != 1 {
			t.Fatalf("user failures = %d, %v after a refused count; want 1", u.FailureCount, err)
		}
	})

	t.Run("of 100 concurrent checks of one right app code exactly one uses its step", func(t *testing.T) {
		fx := newFixture(t, open)
		mustActiveApp(t, fx, 7)
		gate := judgeGate(100, 2*time.Millisecond)
		wins := parallel(t, 100, func(int) (bool, error) {
			c := checkAt(fx, t0, always(verity.ToTheApp))
			c.JudgeApp = func(_ *verity.User, got *verity.Factor) (verity.PINVerdict, int64) {
				gate()
				if got.LastStep >= 8 {
					return verity.LeaveAsIs, 0 // as the app judges a replay
				}
				return verity.UseStepIt, 8
			}
			out, err := fx.store.CheckPIN(ctx, c)
			return out.AppVerdict == verity.UseStepIt && out.Applied, err
		})
		if wins != 1 {
			t.Fatalf("%d checks used step 8, want exactly 1", wins)
		}
	})
}

func testFactorConcurrency(t *testing.T, open Open) {
	ctx := context.Background()

	t.Run("of 100 concurrent uses of one step exactly one wins", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		mustActivate(t, fx.store, f, 1, nil)
		wins := parallel(t, 100, func(int) (bool, error) { return fx.store.UseStep(ctx, stepUse(f, 2)) })
		if wins != 1 {
			t.Fatalf("%d uses of step 2 won, want exactly 1", wins)
		}
	})

	t.Run("of 100 concurrent uses of one recovery code exactly one wins", func(t *testing.T) {
		fx := newFixture(t, open)
		f := pendingFactor(fx.user, "k1")
		fx.store.PutPendingFactor(ctx, f)
		code := randomBytes(32)
		mustActivate(t, fx.store, f, 1, [][]byte{code})
		wins := parallel(t, 100, func(int) (bool, error) { return fx.store.UseRecoveryCode(ctx, recoveryUse(fx.user, code)) })
		if wins != 1 {
			t.Fatalf("%d uses of one recovery code won, want exactly 1", wins)
		}
	})
}
