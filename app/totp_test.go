package app_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"fmt"
	"image/png"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/totp"
)

func seedOf(t *testing.T, e app.Enrolment) []byte {
	t.Helper()
	seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// codeAt is what an authenticator app with the default parameters shows at t.
func codeAt(seed []byte, t time.Time) string {
	p := totp.DefaultParams()
	return totp.Code(seed, totp.Step(t, p.Period), p)
}

// enrolled enrols and activates an app for a new user and returns its seed
// and recovery codes; the clock moves to the next step so the activation
// code's step is behind it.
func enrolled(t *testing.T, e *env, name string) (*verity.User, []byte, []string) {
	t.Helper()
	ctx := context.Background()
	u := e.newUser(t, name)
	en, err := e.app.EnrolTOTP(ctx, e.account, e.service.ID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	seed := seedOf(t, en)
	codes, err := e.app.ConfirmTOTP(ctx, e.account, e.service.ID, u.ID, codeAt(seed, e.clock.Now()))
	if err != nil {
		t.Fatalf("ConfirmTOTP = %v", err)
	}
	e.clock.Advance(30 * time.Second)
	return u, seed, codes
}

func check(t *testing.T, e *env, u *verity.User, c app.Check) app.Checked {
	t.Helper()
	res, err := e.app.CheckVerification(context.Background(), e.account, e.service.ID, u.ID, c)
	if err != nil {
		t.Fatalf("CheckVerification(%+v) = %v", c, err)
	}
	return res
}

func TestEnrolment(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	u := e.newUser(t, "alice@example.com")

	first, err := e.app.EnrolTOTP(ctx, e.account, e.service.ID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("enrolment answers a pending secret, an otpauth URI with the service as issuer, and a QR of that URI", func(t *testing.T) {
		if first.Status != "pending" || len(seedOf(t, first)) != 20 {
			t.Fatalf("enrolment = status %q, %d-byte seed; want pending, 20", first.Status, len(seedOf(t, first)))
		}
		if want := "otpauth://totp/Acme:alice@example.com?"; !strings.HasPrefix(first.URI, want) || !strings.Contains(first.URI, "secret="+first.Secret) {
			t.Fatalf("URI = %q, want prefix %q and the secret", first.URI, want)
		}
		if got := decodeQR(t, first.QRPNG); got != first.URI {
			t.Fatalf("QR decodes to %q, want %q", got, first.URI)
		}
		qr, err := e.app.PendingTOTPQR(ctx, e.account, e.service.ID, u.ID)
		if err != nil || !bytes.Equal(qr, first.QRPNG) {
			t.Fatalf("PendingTOTPQR = %d bytes, %v; want the enrolment's QR", len(qr), err)
		}
	})

	second, err := e.app.EnrolTOTP(ctx, e.account, e.service.ID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("enrolling again while pending replaces the secret", func(t *testing.T) {
		_, err := e.app.ConfirmTOTP(ctx, e.account, e.service.ID, u.ID, codeAt(seedOf(t, first), e.clock.Now()))
		if verity.ErrorCode(err) != verity.EINVALID {
			t.Fatalf("confirm with the replaced secret's code = %v, want EINVALID", err)
		}
	})

	var codes []string
	t.Run("a right code activates and returns 10 distinct recovery codes", func(t *testing.T) {
		codes, err = e.app.ConfirmTOTP(ctx, e.account, e.service.ID, u.ID, codeAt(seedOf(t, second), e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			seen[c] = true
		}
		if len(codes) != 10 || len(seen) != 10 {
			t.Fatalf("recovery codes = %v, want 10 distinct", codes)
		}
		info, err := e.app.TOTPInfo(ctx, e.account, e.service.ID, u.ID)
		if err != nil || info.Factor.Status != "active" || info.RecoveryCodesLeft != 10 {
			t.Fatalf("TOTPInfo = %+v, %v", info, err)
		}
	})
	t.Run("an active app refuses a new enrolment, a second confirmation and the QR", func(t *testing.T) {
		if _, err := e.app.EnrolTOTP(ctx, e.account, e.service.ID, u.ID); verity.ErrorCode(err) != verity.ECONFLICT {
			t.Fatalf("EnrolTOTP(active) = %v, want ECONFLICT", err)
		}
		if _, err := e.app.ConfirmTOTP(ctx, e.account, e.service.ID, u.ID, "123456"); verity.ErrorCode(err) != verity.ECONFLICT {
			t.Fatalf("ConfirmTOTP(active) = %v, want ECONFLICT", err)
		}
		if _, err := e.app.PendingTOTPQR(ctx, e.account, e.service.ID, u.ID); verity.ErrorCode(err) != verity.ENOTFOUND {
			t.Fatalf("PendingTOTPQR(active) = %v, want ENOTFOUND", err)
		}
	})
	t.Run("deleting the app allows a new enrolment", func(t *testing.T) {
		if err := e.app.DeleteTOTP(ctx, e.account, e.service.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.app.TOTPInfo(ctx, e.account, e.service.ID, u.ID); verity.ErrorCode(err) != verity.ENOTFOUND {
			t.Fatalf("TOTPInfo after delete = %v, want ENOTFOUND", err)
		}
		if _, err := e.app.EnrolTOTP(ctx, e.account, e.service.ID, u.ID); err != nil {
			t.Fatal(err)
		}
	})
}

// decodeQR returns the text of the QR code in a PNG.
func decodeQR(t *testing.T, data []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	bmp, _ := gozxing.NewBinaryBitmapFromImage(img)
	// PURE_BARCODE, as in totp's QR test: without it gozxing's finder-pattern search
	// misreads about 1 % of these images (CI failed once on "NotFoundException").
	pure := map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, pure)
	if err != nil {
		t.Fatal(err)
	}
	return res.GetText()
}

func TestEnrolmentWithTheLongestNames(t *testing.T) {
	// The longest service and user names the API accepts, in characters
	// that escape to nine bytes each, made a URI too long for any QR code:
	// the enrolment failed after its factor was stored.
	ctx := context.Background()
	e := newEnv(t)
	svc, err := e.app.CreateService(ctx, e.account, strings.Repeat("€", 200), "long.example")
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.app.CreateUser(ctx, e.account, svc.ID, strings.Repeat("€", 255), "+3725555555")
	if err != nil {
		t.Fatal(err)
	}
	enrolled, err := e.app.EnrolTOTP(ctx, e.account, svc.ID, u.ID)
	if err != nil {
		t.Fatalf("EnrolTOTP = %v", err)
	}
	if got := decodeQR(t, enrolled.QRPNG); got != enrolled.URI {
		t.Fatalf("QR decodes to %q, want %q", got, enrolled.URI)
	}
	if _, err := e.app.ConfirmTOTP(ctx, e.account, svc.ID, u.ID, codeAt(seedOf(t, enrolled), e.clock.Now())); err != nil {
		t.Fatalf("ConfirmTOTP = %v", err)
	}
}

func TestAuthenticatorVerification(t *testing.T) {
	ctx := context.Background()

	t.Run("totp start for a user with an app sends nothing and a check without method uses the app", func(t *testing.T) {
		e := newEnv(t)
		u, seed, _ := enrolled(t, e, "alice")
		started, err := e.app.StartVerification(ctx, e.account, e.service.ID, u.ID, "totp")
		if err != nil || started.Method != "totp" || started.AuthID != "" {
			t.Fatalf("StartVerification(totp) = %+v, %v; want totp without auth_id", started, err)
		}
		if e.outbox.count() != 0 {
			t.Fatalf("%d messages sent, want none", e.outbox.count())
		}
		code := codeAt(seed, e.clock.Now())
		if res := check(t, e, u, app.Check{Token: code}); !res.Verified || res.Method != "totp" {
			t.Fatalf("check = %+v, want verified by totp", res)
		}
		if res := check(t, e, u, app.Check{Token: code}); res.Verified || res.Result != "INVALID" {
			t.Fatalf("replayed code = %+v, want INVALID", res)
		}
		earlier := codeAt(seed, e.clock.Now().Add(-30*time.Second))
		if res := check(t, e, u, app.Check{Token: earlier, Method: "totp"}); res.Verified {
			t.Fatalf("a code of a step before the last accepted one verified: %+v", res)
		}
	})

	t.Run("totp start for a user without an app falls back to SMS and a totp check then checks the PIN", func(t *testing.T) {
		e := newEnv(t)
		u := e.newUser(t, "bob")
		started, err := e.app.StartVerification(ctx, e.account, e.service.ID, u.ID, "totp")
		if err != nil || started.Method != "sms" || started.AuthID == "" || e.outbox.count() != 1 {
			t.Fatalf("StartVerification(totp) = %+v, %v, %d sent; want an SMS", started, err, e.outbox.count())
		}
		pin := e.outbox.msgs[0].Text[len(e.outbox.msgs[0].Text)-6:]
		if res := check(t, e, u, app.Check{Token: pin, Method: "totp"}); !res.Verified || res.Method != "sms" {
			t.Fatalf("check = %+v, want the PIN verified", res)
		}
	})

	t.Run("drift of one step is accepted with the default window, two only with window 2", func(t *testing.T) {
		e := newEnv(t)
		for _, c := range []struct {
			window int
			drift  int
			want   bool
		}{{1, -1, true}, {1, 0, true}, {1, 1, true}, {1, -2, false}, {1, 2, false}, {0, 1, false}, {0, 0, true}, {2, -2, true}, {2, 2, true}} {
			if _, err := e.app.UpdateSettings(ctx, e.account, e.service.ID, func(s *verity.Settings) error {
				s.TOTPWindow = c.window
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			u, seed, _ := enrolled(t, e, fmt.Sprintf("drift-w%d-%+d", c.window, c.drift))
			e.clock.Advance(5 * time.Minute) // well past the activation step
			code := codeAt(seed, e.clock.Now().Add(time.Duration(c.drift)*30*time.Second))
			if res := check(t, e, u, app.Check{Token: code, Method: "totp"}); res.Verified != c.want {
				t.Errorf("window %d, drift %+d steps: verified = %v, want %v", c.window, c.drift, res.Verified, c.want)
			}
		}
	})

	t.Run("of 100 parallel submissions of one valid code exactly one verifies", func(t *testing.T) {
		e := newEnv(t)
		u, seed, _ := enrolled(t, e, "carol")
		code := codeAt(seed, e.clock.Now())
		var wg sync.WaitGroup
		var mu sync.Mutex
		verified, results := 0, map[string]int{}
		start := make(chan struct{})
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := e.app.CheckVerification(ctx, e.account, e.service.ID, u.ID, app.Check{Token: code, Method: "totp"})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				results[res.Result]++
				if res.Verified {
					verified++
				}
			}()
		}
		close(start)
		wg.Wait()
		if verified != 1 {
			t.Fatalf("%d of 100 parallel checks verified (%v), want exactly 1", verified, results)
		}
	})

	t.Run("a recovery code verifies once, typed in any case with or without dashes", func(t *testing.T) {
		e := newEnv(t)
		u, _, codes := enrolled(t, e, "dave")
		typed := strings.ToUpper(strings.ReplaceAll(codes[3], "-", ""))
		if res := check(t, e, u, app.Check{Token: typed, Method: "recovery"}); !res.Verified || res.Method != "recovery" {
			t.Fatalf("recovery = %+v, want verified", res)
		}
		if res := check(t, e, u, app.Check{Token: codes[3], Method: "recovery"}); res.Verified {
			t.Fatal("a recovery code verified twice")
		}
		info, _ := e.app.TOTPInfo(ctx, e.account, e.service.ID, u.ID)
		if info.RecoveryCodesLeft != 9 {
			t.Fatalf("recovery codes left = %d, want 9", info.RecoveryCodesLeft)
		}
	})

	t.Run("a used recovery code, repeated, is INVALID and counts against no limit", func(t *testing.T) {
		e := newEnv(t)
		u, _, codes := enrolled(t, e, "frank")
		if res := check(t, e, u, app.Check{Token: codes[0], Method: "recovery"}); !res.Verified {
			t.Fatalf("recovery = %+v, want verified", res)
		}
		// Twice the failure limit (10) of repeats: counted, they would lock the user out.
		for i := range 20 {
			if res := check(t, e, u, app.Check{Token: codes[0], Method: "recovery"}); res.Verified || res.Result != "INVALID" {
				t.Fatalf("repeat %d = %+v, want INVALID", i+1, res)
			}
		}
		if res := check(t, e, u, app.Check{Token: codes[1], Method: "recovery"}); !res.Verified {
			t.Fatalf("another code after the repeats = %+v, want verified (no lockout)", res)
		}
		// A code that was never one of the user's still counts.
		for range 10 {
			check(t, e, u, app.Check{Token: "aaaa-bbbb-cccc", Method: "recovery"})
		}
		if res := check(t, e, u, app.Check{Token: codes[2], Method: "recovery"}); res.Verified || res.Result != "THROTTLED" {
			t.Fatalf("a code after 10 wrong ones = %+v, want THROTTLED", res)
		}
	})

	t.Run("wrong codes count against the user's failure limit and lock the app out", func(t *testing.T) {
		e := newEnv(t)
		u, seed, codes := enrolled(t, e, "eve")
		for i := range 10 {
			if res := check(t, e, u, app.Check{Token: "000000", Method: "totp"}); res.Result != "INVALID" {
				t.Fatalf("wrong code %d = %s, want INVALID", i+1, res.Result)
			}
		}
		if res := check(t, e, u, app.Check{Token: codeAt(seed, e.clock.Now()), Method: "totp"}); res.Verified || res.Result != "THROTTLED" {
			t.Fatalf("right code while locked = %+v, want THROTTLED", res)
		}
		if res := check(t, e, u, app.Check{Token: codes[0], Method: "recovery"}); res.Verified || res.Result != "THROTTLED" {
			t.Fatalf("recovery code while locked = %+v, want THROTTLED", res)
		}
		e.clock.Advance(time.Hour)
		if res := check(t, e, u, app.Check{Token: codeAt(seed, e.clock.Now()), Method: "totp"}); !res.Verified {
			t.Fatalf("right code after the failure window = %+v, want verified", res)
		}
	})
}

type enrolledUser struct {
	user *verity.User
	seed []byte
}

// enrolThree enrols and activates apps for three new users.
func enrolThree(t *testing.T, e *env) []enrolledUser {
	t.Helper()
	var users []enrolledUser
	for _, name := range []string{"u1", "u2", "u3"} {
		u, seed, _ := enrolled(t, e, name)
		users = append(users, enrolledUser{u, seed})
	}
	return users
}

func TestSeedsAtRest(t *testing.T) {
	e := newEnv(t)
	users := enrolThree(t, e)

	t.Run("the database files hold no seed, raw or base32", func(t *testing.T) {
		var dump []byte
		for _, suffix := range []string{"", "-wal"} { // the WAL too, whatever was checkpointed
			b, err := os.ReadFile(e.dbPath + suffix)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			dump = append(dump, b...)
		}
		if len(dump) == 0 {
			t.Fatal("no database file to inspect")
		}
		for _, u := range users {
			b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(u.seed)
			if bytes.Contains(dump, u.seed) || bytes.Contains(dump, []byte(b32)) {
				t.Fatalf("the database file contains %s's seed", u.user.IDInService)
			}
		}
	})
}

func TestKeyRotationKeepsEveryFactorWorking(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	users := enrolThree(t, e)
	oldKey := e.seeds.Keyring().Primary()
	newKey, err := e.seeds.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.app.RekeySeeds(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RekeySeeds = %d, %v; want 3", n, err)
	}
	if newKey == oldKey {
		t.Fatalf("rotation kept key %q", oldKey)
	}
	for _, u := range users {
		f, err := e.db.Factor(ctx, u.user.ID)
		if err != nil || f.KeyID != newKey {
			t.Fatalf("factor of %s under %q (%v), want %q", u.user.IDInService, f.KeyID, err, newKey)
		}
		if res := check(t, e, u.user, app.Check{Token: codeAt(u.seed, e.clock.Now()), Method: "totp"}); !res.Verified {
			t.Fatalf("%s's app after rotation: %+v, want verified", u.user.IDInService, res)
		}
	}
	if n, err := e.app.RekeySeeds(ctx); err != nil || n != 0 {
		t.Fatalf("second RekeySeeds = %d, %v; want 0 (idempotent)", n, err)
	}
}
