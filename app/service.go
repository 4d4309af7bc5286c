package app

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// CreateService registers a service for acct with the default policy.
func (a *App) CreateService(ctx context.Context, acct *verity.Account, name, fqdn string) (*verity.Service, error) {
	name, fqdn = strings.TrimSpace(name), strings.TrimSpace(fqdn)
	if name == "" || fqdn == "" {
		return nil, verity.Errorf(verity.EINVALID, "fqdn and name are both required")
	}
	if utf8.RuneCountInString(name) > 200 || len(fqdn) > 253 {
		return nil, verity.Errorf(verity.EINVALID, "name must be at most 200 characters and fqdn at most 253")
	}
	if !printable(name) || !printable(fqdn) {
		return nil, verity.Errorf(verity.EINVALID, "name and fqdn must not contain control characters")
	}
	s := &verity.Service{
		ID:        uuid.NewString(),
		AccountID: acct.ID,
		Name:      name,
		FQDN:      fqdn,
		Settings:  verity.DefaultSettings(),
		CreatedAt: a.Now(),
	}
	if err := a.store.CreateService(ctx, s); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT && a.accountGone(ctx, acct.Username) {
			return nil, verity.Errorf(verity.EUNAUTHORIZED, "wrong credentials")
		}
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return nil, verity.Errorf(verity.ECONFLICT, "a service named %q already exists", name)
		}
		return nil, err
	}
	return s, nil
}

// Service returns a service of acct: ENOTFOUND if it does not exist,
// EFORBIDDEN if it belongs to another account.
func (a *App) Service(ctx context.Context, acct *verity.Account, id string) (*verity.Service, error) {
	s, ok := a.services.get(id)
	if !ok {
		var err error
		if s, err = a.store.Service(ctx, id); err != nil {
			return nil, notFound(err, "no such service")
		}
		a.services.put(id, s)
	}
	if s.AccountID != acct.ID {
		return nil, verity.Errorf(verity.EFORBIDDEN, "you do not have access to this service")
	}
	return s, nil
}

// DeleteService deletes a service that has no users left.
func (a *App) DeleteService(ctx context.Context, acct *verity.Account, id string) error {
	if _, err := a.Service(ctx, acct, id); err != nil {
		return err
	}
	err := a.store.DeleteService(ctx, id)
	a.services.forget(id)
	if verity.ErrorCode(err) == verity.ECONFLICT {
		return verity.Errorf(verity.ECONFLICT, "the service still has users: delete its users first")
	}
	return notFound(err, "no such service")
}

// UpdateSettings applies change to the service's settings, validates the
// result and stores it.
func (a *App) UpdateSettings(ctx context.Context, acct *verity.Account, id string, change func(*verity.Settings) error) (verity.Settings, error) {
	a.services.forget(id) // read-modify-write: start from the stored settings
	s, err := a.Service(ctx, acct, id)
	if err != nil {
		return verity.Settings{}, err
	}
	settings := s.Settings
	if err := change(&settings); err != nil {
		return verity.Settings{}, err
	}
	if err := ValidateSettings(settings); err != nil {
		return verity.Settings{}, err
	}
	err = a.store.UpdateServiceSettings(ctx, id, settings)
	a.services.forget(id)
	if err != nil {
		return verity.Settings{}, notFound(err, "no such service")
	}
	return settings, nil
}
