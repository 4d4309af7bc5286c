package verity

import (
	"context"
	"time"
)

// RecoveryCode is a stored recovery code: its hash and when it was used.
type RecoveryCode struct {
	UserID string
	Hash   []byte
	UsedAt time.Time // zero while unused
}

// Record is one row of an installation as `verity store copy` moves it:
// exactly one field is set.
type Record struct {
	Account      *Account
	Service      *Service
	User         *User
	Factor       *Factor
	RecoveryCode *RecoveryCode
}

// Kind names the record's type, for copy summaries.
func (r Record) Kind() string {
	switch {
	case r.Account != nil:
		return "accounts"
	case r.Service != nil:
		return "services"
	case r.User != nil:
		return "users"
	case r.Factor != nil:
		return "factors"
	case r.RecoveryCode != nil:
		return "recovery_codes"
	}
	return "unknown"
}

// Copier is a store that can export and import whole installations. PINs
// are not part of it: they live minutes, and moving them would move limits'
// history nobody needs once a node switches databases.
type Copier interface {
	// Export calls fn for every record in dependency order (accounts,
	// services, users, factors, recovery codes) without holding the whole
	// installation in memory.
	Export(ctx context.Context, fn func(Record) error) error
	// Import inserts r unless a row with its key exists; it reports whether
	// it inserted, so that a repeated copy changes nothing.
	Import(ctx context.Context, r Record) (bool, error)
}
