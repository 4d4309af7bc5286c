package app

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
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
	idInService = strings.TrimSpace(idInService)
	if idInService == "" || utf8.RuneCountInString(idInService) > 255 || !printable(idInService) {
		return nil, verity.Errorf(verity.EINVALID, "id_in_service is required and must be at most 255 printable characters")
	}
	e164, numberType, err := NormalizePhone(phone)
	if err != nil {
		return nil, err
	}
	u := &verity.User{
		ID:          uuid.NewString(),
		ServiceID:   serviceID,
		IDInService: idInService,
		Phone:       e164,
		PhoneType:   numberType,
		CreatedAt:   a.Now(),
	}
	if err := a.store.CreateUser(ctx, u); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return nil, verity.Errorf(verity.ECONFLICT, "a user with this id_in_service already exists in the service")
		}
		return nil, notFound(err, "no such service")
	}
	return u, nil
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
