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
	User(ctx context.Context, serviceID, id string) (*User, error)
	// ListUsers returns up to limit users of a service in creation order,
	// and the total number of users.
	ListUsers(ctx context.Context, serviceID string, limit int) ([]*User, int, error)
	DeleteUser(ctx context.Context, serviceID, id string) error

	// StartPIN makes p.PIN the user's pending PIN if the limits in p allow.
	// When they do not, it changes nothing and returns false with what it saw.
	StartPIN(ctx context.Context, p PINStart) (started bool, seen SendHistory, err error)
	// AbortPIN removes a PIN whose delivery failed, refunding its send.
	AbortPIN(ctx context.Context, pinID string) error
	// PendingPIN returns the user's newest PIN, ENOTFOUND if there is none.
	PendingPIN(ctx context.Context, userID string) (*PIN, error)
	// ConsumePIN marks a PIN used if c's conditions hold; it reports whether it did.
	ConsumePIN(ctx context.Context, c PINConsume) (bool, error)
	// CountFailedTry counts a wrong try if f's conditions hold; it reports whether it did.
	CountFailedTry(ctx context.Context, f FailedTry) (bool, error)
	// DeletePINsBefore removes PINs created before t: the history the limits
	// no longer need.
	DeletePINsBefore(ctx context.Context, t time.Time) (int64, error)

	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	Close() error
}
