package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/verityhq/verity"
)

// TestStepRefusedByTheUsedStepsKeyLeavesTheFactorAsItWas reaches the path of
// useStep that the API never takes today: the factor's last step lets the
// step through, but the (user, step) key of the used steps already holds it.
// The refusal must undo the factor's UPDATE, which ran first, both in
// UseStep and inside CheckPIN's batch, and report no error. Only a row
// written behind the store's back reaches it: re-enrolling deletes the used
// steps with the factor, so it is the second lock on a replay, not the first.
func TestStepRefusedByTheUsedStepsKeyLeavesTheFactorAsItWas(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, svc, u := openWithUser(t, now)
	f := activateApp(t, db, u, now)
	for _, step := range []int64{9, 10} {
		if _, err := db.writer.ExecContext(ctx, `INSERT INTO totp_used_steps (user_id, step, used_at) VALUES (?, ?, ?)`,
			u.ID, step, micros(now)); err != nil {
			t.Fatal(err)
		}
	}
	lastStep := func() int64 {
		t.Helper()
		got, err := db.Factor(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastStep
	}
	use := func(step int64) verity.StepUse {
		return verity.StepUse{FactorID: f.ID, UserID: u.ID, Step: step, Now: now,
			FailureWindowStart: now.Add(-time.Hour), FailureLimit: 10}
	}

	if used, err := db.UseStep(ctx, use(9)); err != nil || used {
		t.Fatalf("UseStep(9), already in the used steps = %v, %v; want refused without an error", used, err)
	}
	if got := lastStep(); got != 5 {
		t.Fatalf("last step after the refused UseStep = %d, want 5 (its UPDATE undone)", got)
	}

	check := verity.PINCheck{ServiceID: svc.ID, UserID: u.ID, Now: now, MaxAttempts: 10,
		FailureWindowStart: now.Add(-time.Hour), FailureLimit: 10,
		Judge:    func(*verity.User, *verity.PIN) verity.PINVerdict { return verity.ToTheApp },
		JudgeApp: func(*verity.User, *verity.Factor) (verity.PINVerdict, int64) { return verity.UseStepIt, 10 },
	}
	out, err := db.CheckPIN(ctx, check)
	if err != nil || out.Applied {
		t.Fatalf("CheckPIN using step 10, already in the used steps = %+v, %v; want refused without an error", out, err)
	}
	if got := lastStep(); got != 5 {
		t.Fatalf("last step after the refused check = %d, want 5 (its UPDATE undone)", got)
	}

	if used, err := db.UseStep(ctx, use(11)); err != nil || !used {
		t.Fatalf("UseStep(11) = %v, %v; want used", used, err)
	}
	if got := lastStep(); got != 11 {
		t.Fatalf("last step after UseStep(11) = %d, want 11", got)
	}
}
