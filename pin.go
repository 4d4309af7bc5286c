package verity

import "time"

// PIN is one code sent to a user. The newest PIN of a user is the pending one;
// older rows remain only as the send history the rate limits count.
type PIN struct {
	ID         string // the auth_id shown to API callers
	UserID     string
	Hash       []byte // a keyed HMAC-SHA256 of the code (see CodeHashSize), never the code
	CreatedAt  time.Time
	ExpiresAt  time.Time
	Attempts   int        // wrong tries counted against this PIN
	ConsumedAt *time.Time // set once, by the one check that verified it
}

// PINStart asks the store to make PIN the user's pending PIN, provided the
// limits below allow one more send. The store enforces them atomically with
// the insert so that they hold under concurrency and across nodes.
type PINStart struct {
	ServiceID string // the user must belong to it: ENOTFOUND otherwise
	PIN       PIN

	SendWindowStart time.Time // sends created after this count against MaxSends
	MaxSends        int
	ResendNotBefore time.Time // the previous send must be at or before this unless it was verified

	FailureWindowStart time.Time // a user failure window that began after this is still open
	FailureLimit       int       // an open window with this many failures blocks sending
}

// PINStarted is StartPIN's answer.
type PINStarted struct {
	Started bool
	// User is the user the PIN is for, as the start's transaction read it:
	// a start needs no read of its own before it.
	User *User
	// Seen is what the store saw: when it refused, the caller can tell from
	// it which limit applied and when it lifts.
	Seen SendHistory
}

// SendHistory is what the store saw when it refused a PINStart, so that the
// caller can tell which limit applied and when it lifts.
type SendHistory struct {
	SendsInWindow  int
	OldestInWindow time.Time
	LastSent       time.Time
	LastVerified   bool
	Failures       int
	FailuresSince  time.Time
}

// PINConsume asks the store to mark PIN ID used, provided it is still the
// user's pending PIN, unused, unexpired, under its try limit and the user is
// not locked out. Exactly one of any number of concurrent calls can succeed.
type PINConsume struct {
	PINID              string
	UserID             string
	Now                time.Time
	MaxAttempts        int
	FailureWindowStart time.Time
	FailureLimit       int
}

// FailedTry asks the store to count one wrong try: against PIN ID (when set)
// and against the user's failure budget, in one transaction, and only while
// both still have room. It reports whether the try was counted.
type FailedTry struct {
	PINID              string // empty for factors without a PIN (an authenticator app)
	UserID             string
	Now                time.Time
	MaxAttempts        int
	FailureWindowStart time.Time // a window that began at or before this has lapsed; a new one starts at Now
	FailureLimit       int
}

// PINVerdict is what a check decides once it has seen the user and the
// user's newest PIN.
type PINVerdict int

const (
	// LeaveAsIs changes nothing: the answer does not depend on the code (the
	// PIN is used, expired, replaced or locked, there is none, or the check
	// is for an authenticator app).
	LeaveAsIs PINVerdict = iota
	// ConsumeIt marks the PIN used: the code matched.
	ConsumeIt
	// CountIt counts a wrong try against the PIN and the user's failure budget.
	CountIt
	// ToTheApp leaves the PIN as it is: the user's authenticator app is to
	// check the code. The store reads the app (when it is active), returns
	// it in PINChecked.Factor and, if JudgeApp is set, applies its verdict
	// in the same operation.
	ToTheApp
	// UseStepIt (from JudgeApp) accepts the app code's time step: see StepUse.
	UseStepIt
)

// PINCheck asks the store to check a code against a user's pending PIN as
// one state change: read the user and its newest PIN, let Judge decide, and
// apply the verdict under PINConsume's or FailedTry's conditions, built from
// the fields below and the ids read.
type PINCheck struct {
	ServiceID string
	UserID    string
	// Judge sees the user and its newest PIN (nil when it has none). It is
	// called at least once, and again when a concurrent check changed the
	// state between the store's read and its write; it must be quick, must
	// not call the store, and its last call is the one that counts.
	Judge func(u *User, p *PIN) PINVerdict
	// JudgeApp, after a ToTheApp verdict, sees the user and its active app
	// and decides: UseStepIt with the step the code matched, CountIt for a
	// wrong code (counted against the user's failure budget alone), or
	// LeaveAsIs. Like Judge it may be called again after a lost race, must
	// be quick and must not call the store. Nil: the app is only read.
	JudgeApp func(u *User, f *Factor) (v PINVerdict, step int64)

	// CodeHash, when set, is the typed code in the stored form a PIN of this
	// user would have under the current hash scheme: CodeHashSize bytes, a
	// tag byte naming the scheme, then the MAC. It lets a store decide in the
	// statement that reads, for a user whose latest start was an SMS PIN
	// (LastMethod not "totp") and whose newest PIN carries the same tag: consume
	// the PIN when its MAC equals CodeHash's, count a wrong try when it does
	// not, each under PINConsume's or FailedTry's conditions, comparing the
	// MACs in constant time. Judge must give the same verdicts in those cases:
	// a store that decided checks that it did, and reports EINTERNAL if not,
	// its write already made. Judge alone decides the rest. A store may ignore
	// CodeHash.
	CodeHash []byte

	Now                time.Time
	MaxAttempts        int
	FailureWindowStart time.Time
	FailureLimit       int
}

// CodeHashSize is the length of a PINCheck's CodeHash, and of a PIN hash
// under the current scheme: a tag byte, then an HMAC-SHA256.
const CodeHashSize = 1 + 32

// PINChecked is what CheckPIN saw and did.
type PINChecked struct {
	User    *User
	PIN     *PIN // nil when the user has none
	Verdict PINVerdict
	// Factor is the user's active authenticator app after a ToTheApp
	// verdict, nil when the user has none (and after any other verdict).
	Factor *Factor
	// AppVerdict is JudgeApp's verdict, when it was asked, and Step the
	// step it named.
	AppVerdict PINVerdict
	Step       int64
	// Applied reports that the verdict's write happened (AppVerdict's,
	// after ToTheApp). A verdict with a write that is not applied lost to
	// concurrent checks every time the store tried.
	Applied bool
}

// Consume returns the ConsumePIN request that applies a ConsumeIt verdict to p.
func (c PINCheck) Consume(p *PIN) PINConsume {
	return PINConsume{PINID: p.ID, UserID: p.UserID, Now: c.Now, MaxAttempts: c.MaxAttempts,
		FailureWindowStart: c.FailureWindowStart, FailureLimit: c.FailureLimit}
}

// StepUse returns the StepUse request that applies JudgeApp's UseStepIt
// verdict to f.
func (c PINCheck) StepUse(f *Factor, step int64) StepUse {
	return StepUse{FactorID: f.ID, UserID: f.UserID, Step: step, Now: c.Now,
		FailureWindowStart: c.FailureWindowStart, FailureLimit: c.FailureLimit}
}

// AppFailedTry returns the FailedTry request that applies JudgeApp's
// CountIt verdict: a wrong code counted against the user alone.
func (c PINCheck) AppFailedTry(u *User) FailedTry {
	return FailedTry{UserID: u.ID, Now: c.Now, MaxAttempts: c.MaxAttempts,
		FailureWindowStart: c.FailureWindowStart, FailureLimit: c.FailureLimit}
}

// FailedTry returns the FailedTry request that applies a CountIt verdict to p.
func (c PINCheck) FailedTry(p *PIN) FailedTry {
	return FailedTry{PINID: p.ID, UserID: p.UserID, Now: c.Now, MaxAttempts: c.MaxAttempts,
		FailureWindowStart: c.FailureWindowStart, FailureLimit: c.FailureLimit}
}

// Allows reports whether the limits of p permit one more send given what the
// store saw. Every store calls it inside the transaction that inserts the
// PIN, so that the decision and the insert are one atomic step.
func (p PINStart) Allows(seen SendHistory) bool {
	lockedOut := seen.Failures >= p.FailureLimit && seen.FailuresSince.After(p.FailureWindowStart)
	tooMany := seen.SendsInWindow >= p.MaxSends
	tooSoon := !seen.LastSent.IsZero() && !seen.LastVerified && seen.LastSent.After(p.ResendNotBefore)
	return !lockedOut && !tooMany && !tooSoon
}
