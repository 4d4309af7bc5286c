package app

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"math/big"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/totp"
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
	svc, err := a.Service(ctx, acct, serviceID)
	if err != nil {
		return Started{}, err
	}
	if method == MethodTOTP {
		user, err := a.store.User(ctx, serviceID, userID)
		if err != nil {
			return Started{}, notFound(err, "no such user")
		}
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
	// StartPIN reads the user and undoes a last method of "totp" in its own
	// transaction: an SMS start is one store call.
	return a.sendPIN(ctx, svc, userID)
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

func (a *App) sendPIN(ctx context.Context, svc *verity.Service, userID string) (Started, error) {
	policy := svc.Settings
	code, err := generatePIN(policy.PINLength)
	if err != nil {
		return Started{}, err
	}
	now := a.Now()
	pin := verity.PIN{
		ID:        newRowID(),
		UserID:    userID,
		CreatedAt: now,
		ExpiresAt: now.Add(policy.PINValidity()),
	}
	if a.PINHashByPIN {
		pin.Hash = a.keys.PINHashByPIN(pin.ID, code)
	} else {
		pin.Hash = a.keys.PINHash(userID, code)
	}
	res, err := a.store.StartPIN(ctx, verity.PINStart{
		ServiceID:          svc.ID,
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
	if !res.Started {
		return Started{}, sendLimitError(policy, res.Seen, now)
	}
	user := res.User

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
		// Undo the start so that no PIN stays pending. A send the provider
		// never took is refunded: its PIN goes, and the send counts against
		// no limit. One it may have taken (ErrMaybeDelivered) keeps counting,
		// or every start that times out against a slow gateway would send
		// one more message past the limits; its PIN only expires. Use a
		// fresh context: the request's may be the one that ended.
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if errors.Is(err, verity.ErrMaybeDelivered) {
			if aerr := a.store.ExpirePIN(abortCtx, pin.UserID, pin.ID, a.Now().Truncate(time.Microsecond)); aerr != nil {
				a.log.ErrorContext(abortCtx, "expire pin after a send of unknown outcome", "pin_id", pin.ID, "err", aerr)
			}
		} else if aerr := a.store.AbortPIN(abortCtx, pin.UserID, pin.ID); aerr != nil {
			a.log.ErrorContext(abortCtx, "abort pin after failed send", "pin_id", pin.ID, "err", aerr)
		}
		a.log.WarnContext(ctx, "sms delivery failed", "message", msg, "err", err)
		var verr *verity.Error
		if errors.As(err, &verr) && (verr.Code == verity.EUPSTREAM || verr.Code == verity.EUNAVAILABLE) {
			return Started{}, err
		}
		return Started{}, &verity.Error{Code: verity.EUNAVAILABLE, Message: "sms delivery failed", Err: err}
	}
	a.log.InfoContext(ctx, "pin sent", "message", msg)
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
	policy := svc.Settings
	if c.Method == MethodRecovery {
		user, err := a.store.User(ctx, serviceID, userID)
		if err != nil {
			return Checked{}, notFound(err, "no such user")
		}
		return a.checkRecovery(ctx, user, policy, c.Token)
	}
	// The common check is one store call: the PIN is judged and used (or the
	// wrong try counted) as one state change.
	appFirst := c.Method == MethodTOTP || c.Method == ""
	res, err := a.checkCode(ctx, serviceID, userID, policy, c, appFirst)
	if err != nil || res.route == routeDone {
		return res.Checked, err
	}
	// The user's latest start was "totp", or "totp" was asked for, or no
	// PIN is pending and no method was named, and the user has no app.
	if res.route == routeApp {
		// "totp" for a user without an app was answered with an SMS PIN.
		res, err = a.checkCode(ctx, serviceID, userID, policy, c, false)
		if err != nil || res.route == routeDone {
			return res.Checked, err
		}
	}
	return Checked{}, verity.Errorf(verity.ENOTFOUND, "there is no pending verification for this user")
}

// Where a code check leaves the request.
const (
	routeDone  = iota // answered
	routeApp          // the authenticator app decides (when the user has one)
	routeNoPIN        // no PIN pending: only an app could answer
)

type codeCheckResult struct {
	Checked
	route int
	user  *verity.User
	err   error // the app's seed could not be opened
}

// checkCode checks the code in one store call: against the pending SMS PIN,
// or, with appFirst, for a user whose latest start was "totp" (or, for
// method "totp", any user), against the user's authenticator app. A code's
// time step is accepted at most once, and never one at or before the app's
// last accepted step.
func (a *App) checkCode(ctx context.Context, serviceID, userID string, policy verity.Settings, c Check, appFirst bool) (codeCheckResult, error) {
	now := a.Now()
	cc := &codeCheck{a: a, userID: userID, policy: policy, c: c, appFirst: appFirst, now: now}
	check := verity.PINCheck{
		ServiceID: serviceID, UserID: userID, Judge: cc.judge, JudgeApp: cc.judgeApp,
		Now: now, MaxAttempts: policy.MaxAttempts,
		FailureWindowStart: now.Add(-policy.FailureWindow()), FailureLimit: policy.FailureLimit,
	}
	if c.Method != MethodTOTP && c.AuthID == "" {
		// For a user whose latest start was an SMS PIN, judge compares
		// typed with the PIN under the PIN's own conditions, as the store
		// may do in the statement that reads.
		check.CodeHash = cc.typedHash()
	}
	out, err := a.store.CheckPIN(ctx, check)
	if err != nil {
		return codeCheckResult{}, notFound(err, "no such user")
	}
	res := cc.res
	if res.err != nil {
		return codeCheckResult{}, res.err
	}
	verdict := out.Verdict
	if verdict == verity.ToTheApp {
		verdict = out.AppVerdict
	}
	if verdict != verity.LeaveAsIs && verdict != verity.ToTheApp && !out.Applied {
		// Concurrent checks kept changing the state under this one: it lost.
		res.Result = ResultInvalid
		if verdict == verity.CountIt {
			res.Result = ResultThrottled // the counters had no room left
		}
	}
	res.Verified = res.Result == ResultVerified
	return res, nil
}

// codeCheck is one checkCode: what its judges need, and what they decided.
// One value whose methods are the judges, where closures over checkCode's
// variables moved each of those to the heap on its own.
type codeCheck struct {
	a        *App
	userID   string
	policy   verity.Settings
	c        Check
	appFirst bool
	now      time.Time

	res   codeCheckResult
	typed []byte // the typed code's hash, once computed
}

// typedHash is the typed code's hash, computed when first needed: a check
// sent to the user's app never compares it.
func (cc *codeCheck) typedHash() []byte {
	if cc.typed == nil {
		cc.typed = cc.a.keys.PINHash(cc.userID, cc.c.Token)
	}
	return cc.typed
}

// judge is the check's verity.PINCheck.Judge.
func (cc *codeCheck) judge(u *verity.User, pin *verity.PIN) verity.PINVerdict {
	c := &cc.c
	cc.res = codeCheckResult{route: routeDone, user: u, Checked: Checked{Method: MethodSMS, Result: ResultInvalid}}
	switch {
	case cc.appFirst && (c.Method == MethodTOTP || u.LastMethod == MethodTOTP):
		cc.res.route = routeApp
		return verity.ToTheApp
	case pin == nil && c.Method == "":
		cc.res.route = routeNoPIN
		return verity.ToTheApp
	case pin == nil:
		cc.res.route = routeNoPIN
		return verity.LeaveAsIs
	case c.AuthID != "" && c.AuthID != pin.ID:
		cc.res.Result = ResultExpired // that PIN was replaced by a newer one
		return verity.LeaveAsIs
	}
	if result := classify(pin, u, cc.policy, cc.now); result != "" {
		cc.res.Result = result
		return verity.LeaveAsIs
	}
	if cc.a.keys.PINMatches(pin, c.Token, cc.typedHash()) {
		cc.res.Result = ResultVerified
		return verity.ConsumeIt
	}
	return verity.CountIt // res.Result is INVALID
}

// judgeApp is the check's verity.PINCheck.JudgeApp.
func (cc *codeCheck) judgeApp(u *verity.User, f *verity.Factor) (verity.PINVerdict, int64) {
	cc.res = codeCheckResult{route: routeDone, user: u, Checked: Checked{Method: MethodTOTP, Result: ResultInvalid}}
	if userLockedOut(u, cc.policy, cc.now) {
		cc.res.Result = ResultThrottled
		return verity.LeaveAsIs, 0
	}
	seed, err := cc.a.openSeed(f)
	if err != nil {
		cc.res.err = err
		return verity.LeaveAsIs, 0
	}
	step, ok := totp.Match(seed, cc.c.Token, cc.now, factorParams(f, cc.policy.TOTPWindow))
	switch {
	case ok && step <= f.LastStep:
		return verity.LeaveAsIs, 0 // a replay: INVALID, and not a guess, so not counted
	case ok:
		cc.res.Result = ResultVerified
		return verity.UseStepIt, step
	}
	return verity.CountIt, 0 // a wrong code: INVALID
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
