// Package app holds Verity's business rules: who may do what, the
// verification policy and its limits, PIN generation and checking. It talks
// to storage only through verity.Store and to delivery through verity.Sender;
// it knows nothing of SQL or HTTP.
package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// App is the verification engine.
type App struct {
	store  verity.Store
	sender verity.Sender
	keys   *Keys
	log    *slog.Logger

	// accounts and services spare the hot path two reads per request.
	accounts *ttlCache[*verity.Account]
	services *ttlCache[*verity.Service]

	// Seeds seals authenticator seeds; nil disables authenticator apps.
	Seeds SeedKeyring
	// Now is the clock; tests replace it.
	Now func() time.Time
	// SendTimeout bounds one delivery attempt.
	SendTimeout time.Duration
	// PINHashByPIN hashes new PINs by their id (Keys.PINHashByPIN), as
	// releases before user-keyed PIN hashes did, so that nodes of such a
	// release can check them during a rolling upgrade. Either way a check
	// accepts both kinds; only PINs hashed by the user are checked in one
	// statement on PostgreSQL.
	PINHashByPIN bool
}

// New returns an App. log may be nil. What the app logs while it serves a
// request is logged with the request's context (see httpapi.LogHandler).
func New(store verity.Store, sender verity.Sender, keys *Keys, log *slog.Logger) *App {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &App{
		store:       store,
		sender:      sender,
		keys:        keys,
		log:         log,
		Now:         func() time.Time { return time.Now().UTC() },
		SendTimeout: 10 * time.Second,
		accounts:    newTTLCache[*verity.Account](cacheTTL, 10000),
		services:    newTTLCache[*verity.Service](cacheTTL, 10000),
	}
}

// cacheTTL bounds how long a node may act on an account or service that
// another node changed or deleted: a settings change reaches every node
// within it. Changes made through this node apply at once.
const cacheTTL = 5 * time.Second

// Ready reports whether the database answers.
func (a *App) Ready(ctx context.Context) error { return a.store.Ping(ctx) }

// pinHistoryKeep is how long PIN rows are kept: longer than the longest send
// window a service may configure, so no limit ever loses history it counts,
// and than the longest failure window, whose budgets a store may drop with
// the history (SQLite does). TestPINHistoryOutlastsEveryWindow holds both.
const pinHistoryKeep = 25 * time.Hour

// RunJanitor deletes PIN history no limit needs any more, every interval,
// until ctx ends.
func (a *App) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := a.store.DeletePINsBefore(ctx, a.Now().Add(-pinHistoryKeep))
		if err != nil && ctx.Err() == nil {
			a.log.Error("janitor: delete old pins", "err", err)
		} else if n > 0 {
			a.log.Info("janitor: deleted old pins", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// notFound turns a store's ENOTFOUND into a caller-facing message and passes
// other errors through.
func notFound(err error, message string) error {
	if verity.ErrorCode(err) == verity.ENOTFOUND {
		return &verity.Error{Code: verity.ENOTFOUND, Message: message, Err: err}
	}
	return err
}

// newRowID names a user or a PIN, the rows created at request rates: a
// UUIDv7, whose leading bits are the time, so that each new id lands at the
// end of the id index (one hot page per group commit) instead of on a random
// page of an index that may hold millions of ids. Behind the millisecond
// time come 12 bits of sub-millisecond clock and 62 random bits: ids stay
// unique and unguessable, and what the time reveals (when the user or PIN
// was created) only reaches callers who already know it.
func newRowID() string { return uuid.Must(uuid.NewV7()).String() }
