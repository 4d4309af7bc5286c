package verity

import (
	"context"
	"time"
)

// Store is Verity's persistence. Implementations hold SQL only: no clock
// policy, no crypto, no business decisions. Every state change that must
// happen once is a single method that is atomic under concurrency and across
// nodes sharing the database. Lookups of missing rows return ENOTFOUND;
// uniqueness violations return ECONFLICT.
type Store interface {
	CreateAccount(ctx context.Context, a *Account) error
	AccountByUsername(ctx context.Context, username string) (*Account, error)
	ListAccounts(ctx context.Context) ([]*Account, error)
	// DeleteAccount returns ECONFLICT while the account still has services.
	DeleteAccount(ctx context.Context, username string) error

	CreateService(ctx context.Context, s *Service) error
	Service(ctx context.Context, id string) (*Service, error)
	UpdateServiceSettings(ctx context.Context, id string, s Settings) error
	// DeleteService returns ECONFLICT while the service still has users.
	DeleteService(ctx context.Context, id string) error

	CreateUser(ctx context.Context, u *User) error
	// CreateUsers inserts all users or none (ECONFLICT if any id_in_service is taken).
	CreateUsers(ctx context.Context, users []*User) error
	User(ctx context.Context, serviceID, id string) (*User, error)
	// ListUsers returns up to limit users of a service in creation order,
	// and the total number of users.
	ListUsers(ctx context.Context, serviceID string, limit int) ([]*User, int, error)
	DeleteUser(ctx context.Context, serviceID, id string) error

	// StartPIN makes p.PIN the user's pending PIN if the limits in p allow,
	// and, in the same transaction, turns a last method of "totp" into
	// "sms" ("" stays: it means "not the app" too, see User.LastMethod).
	// When they do not, it changes nothing and reports what it saw. Either
	// way it returns the user, read in that transaction; ENOTFOUND when
	// the user is not one of service p.ServiceID.
	StartPIN(ctx context.Context, p PINStart) (PINStarted, error)
	// AbortPIN removes PIN pinID of user userID, whose delivery failed,
	// refunding its send. The user's id lets a store find the PIN through
	// the user's PINs, with no index of its own on PIN ids.
	AbortPIN(ctx context.Context, userID, pinID string) error
	// ExpirePIN ends PIN pinID of user userID at `at` if it is unused and
	// would expire later, and keeps it, so that its send still counts: a
	// delivery that may have reached the phone (ErrMaybeDelivered).
	ExpirePIN(ctx context.Context, userID, pinID string, at time.Time) error
	// UserWithPIN returns the user id of service serviceID and its newest PIN
	// (nil when it has none) in one read.
	UserWithPIN(ctx context.Context, serviceID, id string) (*User, *PIN, error)
	// CheckPIN checks a code against the user's pending PIN, or against the
	// user's authenticator app, as one atomic state change (see PINCheck):
	// the check path's one store call. A store
	// that can hold its read and its write under one lock does; one that
	// cannot applies the verdict conditionally and, when a concurrent check
	// changed the state in between, reads and judges again, a bounded
	// number of times. ENOTFOUND when there is no such user.
	CheckPIN(ctx context.Context, c PINCheck) (PINChecked, error)
	// PendingPIN returns the user's newest PIN, ENOTFOUND if there is none.
	PendingPIN(ctx context.Context, userID string) (*PIN, error)
	// ConsumePIN marks a PIN used if c's conditions hold; it reports whether it did.
	ConsumePIN(ctx context.Context, c PINConsume) (bool, error)
	// CountFailedTry counts a wrong try if f's conditions hold; it reports whether it did.
	CountFailedTry(ctx context.Context, f FailedTry) (bool, error)
	// DeletePINsBefore removes PINs created before t: the history the limits
	// no longer need. t is older than any window a limit counts, so a store
	// that keeps failure budgets apart from the users (SQLite) also drops
	// those whose window began before t: a lapsed window counts nothing.
	DeletePINsBefore(ctx context.Context, t time.Time) (int64, error)

	// PutPendingFactor stores f as the user's pending factor, replacing a
	// pending one; ECONFLICT while the user has an active factor.
	PutPendingFactor(ctx context.Context, f *Factor) error
	// Factor returns the user's factor, pending or active.
	Factor(ctx context.Context, userID string) (*Factor, error)
	// ActivateFactor makes the pending factor a.FactorID active, records
	// a.Step as used and stores the recovery codes, in one transaction. It
	// reports false when that factor is no longer the pending one.
	ActivateFactor(ctx context.Context, a FactorActivation) (bool, error)
	// DeleteFactor removes the user's factor, its used steps and recovery codes.
	DeleteFactor(ctx context.Context, userID string) error
	// UseStep accepts a code's time step if u's conditions hold (a unique
	// key on user and step makes a replay impossible); it reports whether it did.
	UseStep(ctx context.Context, u StepUse) (bool, error)
	// UseRecoveryCode consumes a matching unused recovery code if u's
	// conditions hold; it reports whether it did.
	UseRecoveryCode(ctx context.Context, u RecoveryUse) (bool, error)
	// RecoveryCodeUsed reports whether the user has a used recovery code
	// with this hash: a repeat, which a check does not count as a failure.
	RecoveryCodeUsed(ctx context.Context, userID string, hash []byte) (bool, error)
	// RecoveryCodesLeft counts the user's unused recovery codes.
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)
	// SetLastMethod records the method of the user's latest start ("sms" or
	// "totp"; see User.LastMethod for what "" means).
	SetLastMethod(ctx context.Context, userID, method string) error
	// FactorsNotUnderKey returns up to limit factors whose seed is sealed
	// under another key than keyID, for key rotation.
	FactorsNotUnderKey(ctx context.Context, keyID string, limit int) ([]*Factor, error)
	// RekeyFactor replaces a factor's sealed seed if it is still sealed under
	// oldKeyID; it reports whether it did.
	RekeyFactor(ctx context.Context, factorID, oldKeyID, newKeyID string, secret []byte) (bool, error)

	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	Close() error
}
