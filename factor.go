package verity

import "time"

// Factor states.
const (
	FactorPending = "pending" // enrolment started, not yet confirmed with a code
	FactorActive  = "active"
)

// Factor is a user's authenticator app (RFC 6238 TOTP). The seed is stored
// only as an AES-256-GCM ciphertext under the key named KeyID.
type Factor struct {
	ID          string // new for every enrolment attempt
	UserID      string
	Status      string
	KeyID       string
	Secret      []byte // ciphertext of the seed
	Algorithm   string // SHA1, SHA256 or SHA512: fixed at enrolment
	Digits      int
	Period      int // seconds
	LastStep    int64
	CreatedAt   time.Time
	ActivatedAt time.Time // zero while pending
}

// FactorActivation confirms a pending factor with the time step of a code
// that verified, and stores the user's recovery codes (as hashes).
type FactorActivation struct {
	FactorID      string
	UserID        string
	Step          int64
	Now           time.Time
	RecoveryCodes [][]byte // HMAC-SHA256 of each code
}

// StepUse asks the store to accept an authenticator code's time step: at
// most once per user, only after the last accepted step, and only while the
// user is not locked out.
type StepUse struct {
	FactorID           string
	UserID             string
	Step               int64
	Now                time.Time
	FailureWindowStart time.Time
	FailureLimit       int
}

// RecoveryUse asks the store to consume one unused recovery code of the user
// (matched by hash) while the user is not locked out.
type RecoveryUse struct {
	UserID             string
	Hash               []byte
	Now                time.Time
	FailureWindowStart time.Time
	FailureLimit       int
}
