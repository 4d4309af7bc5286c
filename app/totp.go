package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/secretbox"
	"github.com/verityhq/verity/totp"
)

// SeedKeyring provides the keys that seal authenticator seeds at rest. It is
// separate from the server secret that keys PIN hashes.
type SeedKeyring interface {
	Keyring() *secretbox.Keyring
	Reload() error
}

// Enrolment is what a user needs to add Verity to an authenticator app.
type Enrolment struct {
	Secret string // base32, for manual entry
	URI    string // otpauth://totp/…
	QRPNG  []byte
	Status string
}

// FactorInfo describes a user's authenticator app without its seed.
type FactorInfo struct {
	Factor            *verity.Factor
	RecoveryCodesLeft int
}

// recoveryCodeCount is how many recovery codes an activation issues.
const recoveryCodeCount = 10

// qrSize is the side of enrolment QR codes in pixels.
const qrSize = 256

// EnrolTOTP starts (or restarts) enrolling an authenticator app for a user:
// a new seed, sealed at rest, pending until ConfirmTOTP.
func (a *App) EnrolTOTP(ctx context.Context, acct *verity.Account, serviceID, userID string) (Enrolment, error) {
	svc, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return Enrolment{}, err
	}
	keys, err := a.seedKeys()
	if err != nil {
		return Enrolment{}, err
	}
	params := totpParams(svc.Settings)
	seed, err := totp.GenerateSecret(params.Algorithm)
	if err != nil {
		return Enrolment{}, err
	}
	f := &verity.Factor{
		ID:        uuid.NewString(),
		UserID:    user.ID,
		Status:    verity.FactorPending,
		Algorithm: string(params.Algorithm),
		Digits:    params.Digits,
		Period:    params.Period,
		CreatedAt: a.Now(),
	}
	if f.KeyID, f.Secret, err = keys.Keyring().Seal(seed, seedAD(f)); err != nil {
		return Enrolment{}, err
	}
	// The QR code first: an enrolment that cannot be shown stores nothing.
	e, err := enrolment(svc, user, f, seed)
	if err != nil {
		return Enrolment{}, err
	}
	if err := a.store.PutPendingFactor(ctx, f); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return Enrolment{}, verity.Errorf(verity.ECONFLICT, "the user already has an active authenticator app: delete it first")
		}
		return Enrolment{}, notFound(err, "no such user")
	}
	return e, nil
}

func enrolment(svc *verity.Service, user *verity.User, f *verity.Factor, seed []byte) (Enrolment, error) {
	uri := totp.URI(svc.Name, user.IDInService, seed, factorParams(f, 0))
	png, err := totp.QRPNG(uri, qrSize)
	if err != nil {
		return Enrolment{}, err
	}
	return Enrolment{Secret: totp.EncodeSecret(seed), URI: uri, QRPNG: png, Status: f.Status}, nil
}

// PendingTOTPQR returns the QR code of a pending enrolment, for an <img>.
func (a *App) PendingTOTPQR(ctx context.Context, acct *verity.Account, serviceID, userID string) ([]byte, error) {
	svc, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return nil, err
	}
	f, err := a.store.Factor(ctx, user.ID)
	if err != nil {
		return nil, notFound(err, "the user has no authenticator app enrolment")
	}
	if f.Status != verity.FactorPending {
		return nil, verity.Errorf(verity.ENOTFOUND, "the QR code is shown only while enrolment is pending")
	}
	seed, err := a.openSeed(f)
	if err != nil {
		return nil, err
	}
	e, err := enrolment(svc, user, f, seed)
	return e.QRPNG, err
}

// ConfirmTOTP activates a pending enrolment with a code from the app and
// returns the recovery codes, which are shown this once.
func (a *App) ConfirmTOTP(ctx context.Context, acct *verity.Account, serviceID, userID, token string) ([]string, error) {
	svc, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return nil, err
	}
	if token == "" || len(token) > 64 {
		return nil, verity.Errorf(verity.EINVALID, "token is required and must be at most 64 characters")
	}
	f, err := a.store.Factor(ctx, user.ID)
	if err != nil {
		return nil, notFound(err, "the user has no authenticator app enrolment: start one with POST")
	}
	if f.Status != verity.FactorPending {
		return nil, verity.Errorf(verity.ECONFLICT, "the authenticator app is already active")
	}
	policy := svc.Settings
	now := a.Now()
	if userLockedOut(user, policy, now) {
		return nil, &verity.Error{Code: verity.ERATELIMIT, Message: "too many wrong codes for this user: try again later",
			RetryAfter: user.FailureWindowStart.Add(policy.FailureWindow()).Sub(now)}
	}
	seed, err := a.openSeed(f)
	if err != nil {
		return nil, err
	}
	step, ok := totp.Match(seed, token, now, factorParams(f, policy.TOTPWindow))
	if !ok {
		if _, err := a.store.CountFailedTry(ctx, a.failedTry(user, policy, now, "")); err != nil {
			return nil, err
		}
		return nil, verity.Errorf(verity.EINVALID, "the code does not match: check the app's clock and enter a fresh code")
	}
	codes, hashes, err := a.newRecoveryCodes(user.ID)
	if err != nil {
		return nil, err
	}
	activated, err := a.store.ActivateFactor(ctx, verity.FactorActivation{
		FactorID: f.ID, UserID: user.ID, Step: step, Now: now, RecoveryCodes: hashes})
	if err != nil {
		return nil, err
	}
	if !activated {
		return nil, verity.Errorf(verity.ECONFLICT, "the enrolment changed while confirming: start again")
	}
	return codes, nil
}

// TOTPInfo returns the state of a user's authenticator app.
func (a *App) TOTPInfo(ctx context.Context, acct *verity.Account, serviceID, userID string) (FactorInfo, error) {
	_, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return FactorInfo{}, err
	}
	f, err := a.store.Factor(ctx, user.ID)
	if err != nil {
		return FactorInfo{}, notFound(err, "the user has no authenticator app")
	}
	left, err := a.store.RecoveryCodesLeft(ctx, user.ID)
	if err != nil {
		return FactorInfo{}, err
	}
	return FactorInfo{Factor: f, RecoveryCodesLeft: left}, nil
}

// DeleteTOTP removes a user's authenticator app and recovery codes.
func (a *App) DeleteTOTP(ctx context.Context, acct *verity.Account, serviceID, userID string) error {
	_, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return err
	}
	return notFound(a.store.DeleteFactor(ctx, user.ID), "the user has no authenticator app")
}

// checkRecovery consumes a recovery code.
func (a *App) checkRecovery(ctx context.Context, user *verity.User, policy verity.Settings, token string) (Checked, error) {
	now := a.Now()
	if userLockedOut(user, policy, now) {
		return Checked{Method: MethodRecovery, Result: ResultThrottled}, nil
	}
	hash := a.keys.RecoveryCodeHash(user.ID, normalizeRecoveryCode(token))
	used, err := a.store.UseRecoveryCode(ctx, verity.RecoveryUse{UserID: user.ID, Hash: hash, Now: now,
		FailureWindowStart: now.Add(-policy.FailureWindow()), FailureLimit: policy.FailureLimit})
	if err != nil {
		return Checked{}, err
	}
	if used {
		return Checked{Method: MethodRecovery, Verified: true, Result: ResultVerified}, nil
	}
	// A code already used is a repeat (an app that submitted twice, a user
	// who pressed twice), answered INVALID and not counted, as a used PIN's
	// repeat is not: counted, a double submission could lock the user out.
	if repeat, err := a.store.RecoveryCodeUsed(ctx, user.ID, hash); err != nil {
		return Checked{}, err
	} else if repeat {
		return Checked{Method: MethodRecovery, Result: ResultInvalid}, nil
	}
	return a.countWrong(ctx, user, policy, now, MethodRecovery)
}

// countWrong counts a wrong code (without a PIN) against the user's
// failure budget: INVALID while the budget has room, THROTTLED after.
func (a *App) countWrong(ctx context.Context, user *verity.User, policy verity.Settings, now time.Time, method string) (Checked, error) {
	counted, err := a.store.CountFailedTry(ctx, a.failedTry(user, policy, now, ""))
	if err != nil {
		return Checked{}, err
	}
	if counted {
		return Checked{Method: method, Result: ResultInvalid}, nil
	}
	return Checked{Method: method, Result: ResultThrottled}, nil
}

func (a *App) failedTry(user *verity.User, policy verity.Settings, now time.Time, pinID string) verity.FailedTry {
	return verity.FailedTry{PINID: pinID, UserID: user.ID, Now: now, MaxAttempts: policy.MaxAttempts,
		FailureWindowStart: now.Add(-policy.FailureWindow()), FailureLimit: policy.FailureLimit}
}

func (a *App) seedKeys() (SeedKeyring, error) {
	if a.Seeds == nil {
		return nil, verity.Errorf(verity.EUNAVAILABLE, "authenticator apps are not configured on this server")
	}
	return a.Seeds, nil
}

// openSeed decrypts a factor's seed. An unknown key id means another
// process rotated the keys: reload them once and retry.
func (a *App) openSeed(f *verity.Factor) ([]byte, error) {
	keys, err := a.seedKeys()
	if err != nil {
		return nil, err
	}
	seed, err := keys.Keyring().Open(f.KeyID, f.Secret, seedAD(f))
	if errors.Is(err, secretbox.ErrUnknownKey) {
		if rerr := keys.Reload(); rerr == nil {
			seed, err = keys.Keyring().Open(f.KeyID, f.Secret, seedAD(f))
		}
	}
	if err != nil {
		return nil, &verity.Error{Code: verity.EINTERNAL, Op: "app.openSeed", Err: err}
	}
	return seed, nil
}

// seedAD binds a sealed seed to its factor and user: a ciphertext copied to
// another row does not open.
func seedAD(f *verity.Factor) []byte {
	return []byte("verity totp seed v1\x00" + f.ID + "\x00" + f.UserID)
}

func totpParams(s verity.Settings) totp.Params {
	return totp.Params{Algorithm: totp.Algorithm(s.TOTPAlgorithm), Digits: s.TOTPDigits, Period: s.TOTPPeriodSeconds, Skew: s.TOTPWindow}
}

// factorParams are the parameters fixed at enrolment with the service's
// current drift window.
func factorParams(f *verity.Factor, skew int) totp.Params {
	return totp.Params{Algorithm: totp.Algorithm(f.Algorithm), Digits: f.Digits, Period: f.Period, Skew: skew}
}

// recoveryAlphabet is Crockford's base32: no I, L, O or U to misread.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// newRecoveryCodes returns fresh codes ("xxxx-xxxx-xxxx", 60 bits each) and
// their hashes.
func (a *App) newRecoveryCodes(userID string) ([]string, [][]byte, error) {
	codes := make([]string, recoveryCodeCount)
	hashes := make([][]byte, recoveryCodeCount)
	buf := make([]byte, 12)
	for i := range codes {
		if _, err := rand.Read(buf); err != nil {
			return nil, nil, err
		}
		var b strings.Builder
		for j, v := range buf {
			if j > 0 && j%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[v&31])
		}
		codes[i] = b.String()
		hashes[i] = a.keys.RecoveryCodeHash(userID, normalizeRecoveryCode(codes[i]))
	}
	return codes, hashes, nil
}

// normalizeRecoveryCode accepts a code as a person types it: any case, with
// or without dashes and spaces.
func normalizeRecoveryCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// RekeySeeds re-encrypts every authenticator seed that is not sealed under
// the keyring's primary key, a batch at a time, and returns how many it
// re-encrypted. Servers keep working throughout: they open seeds under any
// key the keyring still holds.
func (a *App) RekeySeeds(ctx context.Context) (int, error) {
	keys, err := a.seedKeys()
	if err != nil {
		return 0, err
	}
	total := 0
	for {
		ring := keys.Keyring()
		batch, err := a.store.FactorsNotUnderKey(ctx, ring.Primary(), 100)
		if err != nil || len(batch) == 0 {
			return total, err
		}
		for _, f := range batch {
			seed, err := ring.Open(f.KeyID, f.Secret, seedAD(f))
			if err != nil {
				return total, fmt.Errorf("open seed of factor %s (key %q): %w", f.ID, f.KeyID, err)
			}
			keyID, sealed, err := ring.Seal(seed, seedAD(f))
			if err != nil {
				return total, err
			}
			// A factor re-enrolled meanwhile is skipped here and picked up by
			// the next batch if its new seed is still under an old key.
			ok, err := a.store.RekeyFactor(ctx, f.ID, f.KeyID, keyID, sealed)
			if err != nil {
				return total, err
			}
			if ok {
				total++
			}
		}
	}
}
