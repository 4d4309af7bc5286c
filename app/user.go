package app

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/verityhq/verity"
)

// MaxListUsers caps one user listing: the Verigator list has no paging, so
// the cap keeps one request's memory bounded.
const MaxListUsers = 10000

// CreateUser registers a user of a service.
func (a *App) CreateUser(ctx context.Context, acct *verity.Account, serviceID, idInService, phone string) (*verity.User, error) {
	if _, err := a.Service(ctx, acct, serviceID); err != nil {
		return nil, err
	}
	u, err := a.newUser(serviceID, idInService, phone, a.Now())
	if err != nil {
		return nil, err
	}
	if err := a.store.CreateUser(ctx, u); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT && a.serviceGone(ctx, serviceID) {
			return nil, verity.Errorf(verity.ENOTFOUND, "no such service")
		}
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return nil, verity.Errorf(verity.ECONFLICT, "a user with this id_in_service already exists in the service")
		}
		return nil, notFound(err, "no such service")
	}
	return u, nil
}

// newUser validates a registration and builds the user.
func (a *App) newUser(serviceID, idInService, phone string, now time.Time) (*verity.User, error) {
	idInService = strings.TrimSpace(idInService)
	if idInService == "" || utf8.RuneCountInString(idInService) > 255 || !printable(idInService) {
		return nil, verity.Errorf(verity.EINVALID, "id_in_service is required and must be at most 255 printable characters")
	}
	e164, numberType, err := NormalizePhone(phone)
	if err != nil {
		return nil, err
	}
	return &verity.User{
		ID:          newRowID(),
		ServiceID:   serviceID,
		IDInService: idInService,
		Phone:       e164,
		PhoneType:   numberType,
		CreatedAt:   now,
	}, nil
}

// MaxBulkUsers caps one bulk registration.
const MaxBulkUsers = 1000

// NewUser is one entry of a bulk registration.
type NewUser struct {
	IDInService string
	Phone       string
}

// CreateUsers registers up to MaxBulkUsers users of a service in one
// transaction: all of them, or none when any entry is invalid or taken.
func (a *App) CreateUsers(ctx context.Context, acct *verity.Account, serviceID string, entries []NewUser) ([]*verity.User, error) {
	if _, err := a.Service(ctx, acct, serviceID); err != nil {
		return nil, err
	}
	if len(entries) == 0 || len(entries) > MaxBulkUsers {
		return nil, verity.Errorf(verity.EINVALID, "users must hold 1 to %d entries", MaxBulkUsers)
	}
	now := a.Now()
	users := make([]*verity.User, len(entries))
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		u, err := a.newUser(serviceID, e.IDInService, e.Phone, now)
		if err != nil {
			return nil, &verity.Error{Code: verity.EINVALID, Message: fmt.Sprintf("users[%d]: %s", i, verity.ErrorMessage(err))}
		}
		if j, dup := seen[u.IDInService]; dup {
			return nil, verity.Errorf(verity.ECONFLICT, "users[%d] repeats the id_in_service of users[%d]", i, j)
		}
		seen[u.IDInService] = i
		users[i] = u
	}
	if err := a.store.CreateUsers(ctx, users); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT && a.serviceGone(ctx, serviceID) {
			return nil, verity.Errorf(verity.ENOTFOUND, "no such service")
		}
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return nil, verity.Errorf(verity.ECONFLICT, "a user with one of these id_in_service values already exists in the service: none were created")
		}
		return nil, notFound(err, "no such service")
	}
	return users, nil
}

// ListUsers returns up to limit users of a service (MaxListUsers when limit
// is 0 or larger) and the total count.
func (a *App) ListUsers(ctx context.Context, acct *verity.Account, serviceID string, limit int) ([]*verity.User, int, error) {
	if _, err := a.Service(ctx, acct, serviceID); err != nil {
		return nil, 0, err
	}
	if limit <= 0 || limit > MaxListUsers {
		limit = MaxListUsers
	}
	return a.store.ListUsers(ctx, serviceID, limit)
}

// User returns one user of a service.
func (a *App) User(ctx context.Context, acct *verity.Account, serviceID, userID string) (*verity.User, error) {
	if _, err := a.Service(ctx, acct, serviceID); err != nil {
		return nil, err
	}
	u, err := a.store.User(ctx, serviceID, userID)
	return u, notFound(err, "no such user")
}

// DeleteUser deletes a user and everything pending for it.
func (a *App) DeleteUser(ctx context.Context, acct *verity.Account, serviceID, userID string) error {
	if _, err := a.Service(ctx, acct, serviceID); err != nil {
		return err
	}
	return notFound(a.store.DeleteUser(ctx, serviceID, userID), "no such user")
}

// serviceGone tells a conflict caused by a service deleted on another node
// (its foreign key refused the user; this node's cache still had it) from a
// duplicate. It runs only on the error path.
func (a *App) serviceGone(ctx context.Context, serviceID string) bool {
	a.services.forget(serviceID)
	_, err := a.store.Service(ctx, serviceID)
	return verity.ErrorCode(err) == verity.ENOTFOUND
}
