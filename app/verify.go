package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"math"
	"math/big"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// Verification methods of the Verigator API.
const (
	MethodSMS  = "sms"
	MethodTOTP = "totp"
	// MethodRecovery checks a one-time recovery code (a Verity extension).
	MethodRecovery = "recovery"
)

// Check results of the Verigator API.
const (
	ResultVerified  = "VERIFIED"
	ResultInvalid   = "INVALID"
	ResultExpired   = "EXPIRED"
	ResultThrottled = "THROTTLED"
)

// Started is the answer to a start: which method is in use and, for SMS,
// the PIN's id.
type Started struct {
	Method string
	AuthID string // empty when nothing was sent
}

// Check is one verification attempt.
type Check struct {
	Token  string
	Method string // optional: "sms", "totp", "recovery" or empty
	AuthID string // optional: the PIN the caller means
}

// Checked is the outcome of a check. A failed check is not an error.
type Checked struct {
	Method   string
	Verified bool
	Result   string
}

// StartVerification starts verifying a user. "totp" for a user with an
// active authenticator app sends nothing: the user reads the code from the
// app. "sms", and "totp" for a user without one, send a new PIN that
// replaces the pending one, within the service's send limits.
func (a *App) StartVerification(ctx context.Context, acct *verity.Account, serviceID, userID, method string) (Started, error) {
	if method != MethodSMS && method != MethodTOTP {
		return Started{}, verity.Errorf(verity.EINVALID, `method must be "sms" or "totp"`)
	}
	svc, user, err := a.serviceUser(ctx, acct, serviceID, userID)
	if err != nil {
		return Started{}, err
	}
	if method == MethodTOTP {
		f, err := a.activeFactor(ctx, user)
		if err != nil {
			return Started{}, err
		}
		if f != nil {
			if err := a.recordMethod(ctx, user, MethodTOTP); err != nil {
				return Started{}, err
			}
			return Started{Method: MethodTOTP}, nil
		}
		// No app set up: fall back to SMS, as the Verigator contract says.
	}
	// StartPIN records "sms" as the last method in its own transaction.
	return a.sendPIN(ctx, svc, user)
}

// activeFactor returns the user's active authenticator app, or nil.
func (a *App) activeFactor(ctx context.Context, user *verity.User) (*verity.Factor, error) {
	f, err := a.store.Factor(ctx, user.ID)
	if verity.ErrorCode(err) == verity.ENOTFOUND || (err == nil && f.Status != verity.FactorActive) {
		return nil, nil
	}
	return f, err
}

// recordMethod remembers the latest start's method, which decides what a
// check without "method" verifies. It writes only when the method changes.
func (a *App) recordMethod(ctx context.Context, user *verity.User, method string) error {
	if user.LastMethod == method {
		return nil
	}
	return notFound(a.store.SetLastMethod(ctx, user.ID, method), "no such user")
}

func (a *App) sendPIN(ctx context.Context, svc *verity.Service, user *verity.User) (Started, error) {
	policy := svc.Settings
	code, err := generatePIN(policy.PINLength)
	if err != nil {
		return Started{}, err
	}
	now := a.Now()
	pin := verity.PIN{
		ID:        uuid.NewString(),
		UserID:    user.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(policy.PINValidity()),
	}
	pin.Hash = a.keys.PINHash(pin.ID, code)
	started, seen, err := a.store.StartPIN(ctx, verity.PINStart{
		PIN:                pin,
		SendWindowStart:    now.Add(-policy.SendWindow()),
		MaxSends:           policy.MaxSends,
		ResendNotBefore:    now.Add(-policy.ResendInterval()),
		FailureWindowStart: now.Add(-policy.FailureWindow()),
		FailureLimit:       policy.FailureLimit,
	})
	if err != nil {
		return Started{}, notFound(err, "no such user")
	}
	if !started {
		return Started{}, sendLimitError(policy, seen, now)
	}

	msg := verity.Message{
		ID:        pin.ID,
		To:        user.Phone,
		From:      policy.SenderName,
		Text:      renderMessage(policy.MessageTemplate, svc.Name, code),
		ServiceID: svc.ID,
		CreatedAt: now,
	}
	sendCtx, cancel := context.WithTimeout(ctx, a.SendTimeout)
	err = a.sender.Send(sendCtx, msg)
	cancel()
	if err != nil {
		// Undo the start so that no PIN the user never received stays pending
		// and the failed send does not count against the user's limits. Use a
		// fresh context: the request's may be the one that ended.
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if aerr := a.store.AbortPIN(abortCtx, pin.ID); aerr != nil {
			a.log.Error("abort pin after failed send", "pin_id", pin.ID, "err", aerr)
		}
		a.log.Warn("sms delivery failed", "message", msg, "err", err)
		var verr *verity.Error
		if errors.As(err, &verr) && (verr.Code == verity.EUPSTREAM || verr.Code == verity.EUNAVAILABLE) {
			return Started{}, err
		}
		return Started{}, &verity.Error{Code: verity.EUNAVAILABLE, Message: "sms delivery failed", Err: err}
	}
	a.log.Info("pin sent", "message", msg)
	return Started{Method: MethodSMS, AuthID: pin.ID}, nil
}

// sendLimitError tells which limit refused a start and when it lifts.
func sendLimitError(policy verity.Settings, seen verity.SendHistory, now time.Time) error {
	var retryAt time.Time
	message := "too many verification attempts for this user"
	later := func(t time.Time, m string) {
		if t.After(retryAt) {
			retryAt, message = t, m
		}
	}
	if seen.Failures >= policy.FailureLimit {
		later(seen.FailuresSince.Add(policy.FailureWindow()), "too many wrong codes for this user: try again later")
	}
	if seen.SendsInWindow >= policy.MaxSends {
		later(seen.OldestInWindow.Add(policy.SendWindow()), "too many codes sent to this user: try again later")
	}
	if !seen.LastVerified && !seen.LastSent.IsZero() {
		later(seen.LastSent.Add(policy.ResendInterval()), "a code was sent to this user moments ago: wait before sending another")
	}
	wait := time.Duration(math.Ceil(retryAt.Sub(now).Seconds())) * time.Second
	return &verity.Error{Code: verity.ERATELIMIT, Message: message, RetryAfter: max(wait, time.Second)}
}

// CheckVerification checks a code the user typed: an authenticator code
// when the method says so (explicitly, or by the user's latest start being
// "totp"), a recovery code for "recovery", the pending SMS PIN otherwise.
// Of any number of concurrent checks of one right code exactly one verifies.
func (a *App) CheckVerification(ctx context.Context, acct *verity.Account, serviceID, userID string, c Check) (Checked, error) {
	switch c.Method {
	case "", MethodSMS, MethodTOTP, MethodRecovery:
	default:
		return Checked{}, verity.Errorf(verity.EINVALID, `method must be "sms", "totp" or "recovery"`)
	}
	if c.Token == "" || len(c.Token) > 64 {
		return Checked{}, verity.Errorf(verity.EINVALID, "token is required and must be at most 64 characters")
	}
	svc, err := a.Service(ctx, acct, serviceID)
	if err != nil {
		return Checked{}, err
	}
	// One read for the user and its pending PIN: the common check needs
	// nothing else before its one write.
	user, pin, err := a.store.UserWithPIN(ctx, serviceID, userID)
	if err != nil {
		return Checked{}, notFound(err, "no such user")
	}
	policy := svc.Settings
	if c.Method == MethodRecovery {
		return a.checkRecovery(ctx, user, policy, c.Token)
	}
	if c.Method == MethodTOTP || (c.Method == "" && user.LastMethod == MethodTOTP) {
		factor, err := a.activeFactor(ctx, user)
		if err != nil {
			return Checked{}, err
		}
		if factor != nil {
			return a.checkTOTP(ctx, user, factor, policy, c.Token)
		}
		// "totp" for a user without an app was answered with an SMS PIN.
	}
	if pin == nil && c.Method == "" {
		// No PIN pending: an app is the only thing left to check.
		factor, err := a.activeFactor(ctx, user)
		if err != nil {
			return Checked{}, err
		}
		if factor != nil {
			return a.checkTOTP(ctx, user, factor, policy, c.Token)
		}
	}
	if pin == nil {
		return Checked{}, verity.Errorf(verity.ENOTFOUND, "there is no pending verification for this user")
	}
	return a.checkPIN(ctx, user, pin, policy, c)
}

// checkPIN checks the pending SMS PIN.
func (a *App) checkPIN(ctx context.Context, user *verity.User, pin *verity.PIN, policy verity.Settings, c Check) (Checked, error) {
	now := a.Now()
	checked := func(result string) (Checked, error) {
		return Checked{Method: MethodSMS, Verified: result == ResultVerified, Result: result}, nil
	}
	if c.AuthID != "" && c.AuthID != pin.ID {
		return checked(ResultExpired) // that PIN was replaced by a newer one
	}
	if result := classify(pin, user, policy, now); result != "" {
		return checked(result)
	}

	failureWindowStart := now.Add(-policy.FailureWindow())
	if hmac.Equal(a.keys.PINHash(pin.ID, c.Token), pin.Hash) {
		ok, err := a.store.ConsumePIN(ctx, verity.PINConsume{
			PINID: pin.ID, UserID: user.ID, Now: now, MaxAttempts: policy.MaxAttempts,
			FailureWindowStart: failureWindowStart, FailureLimit: policy.FailureLimit,
		})
		if err != nil {
			return Checked{}, err
		}
		if ok {
			return checked(ResultVerified)
		}
	} else {
		counted, err := a.store.CountFailedTry(ctx, a.failedTry(user, policy, now, pin.ID))
		if err != nil {
			return Checked{}, err
		}
		if counted {
			return checked(ResultInvalid)
		}
	}
	// A concurrent check changed the state between our read and our write:
	// read it again to say why this one lost.
	return a.reclassify(ctx, user, policy, now)
}

func (a *App) reclassify(ctx context.Context, user *verity.User, policy verity.Settings, now time.Time) (Checked, error) {
	fresh, pin, err := a.store.UserWithPIN(ctx, user.ServiceID, user.ID)
	if err != nil {
		return Checked{}, notFound(err, "no such user")
	}
	if pin == nil {
		return Checked{}, verity.Errorf(verity.ENOTFOUND, "there is no pending verification for this user")
	}
	result := classify(pin, fresh, policy, now)
	if result == "" {
		result = ResultInvalid
	}
	return Checked{Method: MethodSMS, Result: result}, nil
}

// classify returns the result a check of pin must get whatever the code, or
// "" when the code decides.
func classify(pin *verity.PIN, user *verity.User, policy verity.Settings, now time.Time) string {
	switch {
	case pin.ConsumedAt != nil:
		return ResultInvalid // a PIN verifies once
	case userLockedOut(user, policy, now):
		return ResultThrottled
	case !now.Before(pin.ExpiresAt):
		return ResultExpired
	case pin.Attempts >= policy.MaxAttempts:
		return ResultThrottled
	}
	return ""
}

func userLockedOut(u *verity.User, policy verity.Settings, now time.Time) bool {
	return u.FailureCount >= policy.FailureLimit && u.FailureWindowStart.After(now.Add(-policy.FailureWindow()))
}

func (a *App) serviceUser(ctx context.Context, acct *verity.Account, serviceID, userID string) (*verity.Service, *verity.User, error) {
	svc, err := a.Service(ctx, acct, serviceID)
	if err != nil {
		return nil, nil, err
	}
	user, err := a.store.User(ctx, serviceID, userID)
	if err != nil {
		return nil, nil, notFound(err, "no such user")
	}
	return svc, user, nil
}

// generatePIN returns n uniformly distributed decimal digits from crypto/rand.
func generatePIN(n int) (string, error) {
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, limit) // rejection-sampled: no modulo bias
	if err != nil {
		return "", err
	}
	s := v.String()
	for len(s) < n {
		s = "0" + s
	}
	return s, nil
}
