package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// DevUsername is the account `serve --dev` creates.
const DevUsername = "dev"

// dummyHash is compared against when the username does not exist, so that
// "no such account" and "wrong password" take the same work.
var dummyHash = make([]byte, 32)

// CreateAccount creates an API account and returns it with its password,
// which is shown once and stored only as a keyed hash.
func (a *App) CreateAccount(ctx context.Context, username string) (*verity.Account, string, error) {
	if err := validateUsername(username); err != nil {
		return nil, "", err
	}
	secret := make([]byte, 32) // 256 bits
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	password := base64.RawURLEncoding.EncodeToString(secret)
	acct, err := a.createAccount(ctx, username, password)
	return acct, password, err
}

func (a *App) createAccount(ctx context.Context, username, password string) (*verity.Account, error) {
	acct := &verity.Account{
		ID:         uuid.NewString(),
		Username:   username,
		SecretHash: a.keys.CredentialHash(password),
		CreatedAt:  a.Now(),
	}
	if err := a.store.CreateAccount(ctx, acct); err != nil {
		if verity.ErrorCode(err) == verity.ECONFLICT {
			return nil, verity.Errorf(verity.ECONFLICT, "account %q already exists", username)
		}
		return nil, err
	}
	return acct, nil
}

// EnsureDevAccount creates the development account on first use and returns
// its credentials. The password is derived from the server key, so it is
// the same on every start and never stored. matches is false when an account
// named "dev" exists with another password.
func (a *App) EnsureDevAccount(ctx context.Context) (username, password string, created, matches bool, err error) {
	password = a.keys.DevPassword()
	existing, err := a.store.AccountByUsername(ctx, DevUsername)
	switch verity.ErrorCode(err) {
	case "":
		return DevUsername, password, false, hmac.Equal(existing.SecretHash, a.keys.CredentialHash(password)), nil
	case verity.ENOTFOUND:
		if _, err := a.createAccount(ctx, DevUsername, password); err != nil {
			return "", "", false, false, err
		}
		return DevUsername, password, true, true, nil
	default:
		return "", "", false, false, err
	}
}

// ListAccounts returns all accounts.
func (a *App) ListAccounts(ctx context.Context) ([]*verity.Account, error) {
	return a.store.ListAccounts(ctx)
}

// DeleteAccount deletes an account that has no services left.
func (a *App) DeleteAccount(ctx context.Context, username string) error {
	err := a.store.DeleteAccount(ctx, username)
	a.accounts.forget(username)
	switch verity.ErrorCode(err) {
	case verity.ENOTFOUND:
		return verity.Errorf(verity.ENOTFOUND, "no account %q", username)
	case verity.ECONFLICT:
		return verity.Errorf(verity.ECONFLICT, "account %q still has services: delete them first", username)
	}
	return err
}

// Authenticate checks an X-Service-Auth value ("username:password", split at
// the first colon) and returns the account.
//
// A password that matches the cached account costs no read. Any other
// attempt reads the account afresh: so a failure costs one read whether or
// not the name has an account, and takes the same time (security invariant
// 4; when only unknown names were read, timing told names apart), and a
// password changed through another node works at once.
func (a *App) Authenticate(ctx context.Context, header string) (*verity.Account, error) {
	if header == "" {
		return nil, verity.Errorf(verity.EUNAUTHORIZED, "missing X-Service-Auth header")
	}
	username, password, ok := strings.Cut(header, ":")
	if !ok || username == "" || password == "" {
		return nil, verity.Errorf(verity.EUNAUTHORIZED, "malformed X-Service-Auth header: want username:password")
	}
	if validateUsername(username) != nil {
		return nil, wrongCredentials() // no account can have this name: nothing to read
	}
	hash := a.keys.CredentialHash(password)
	if acct, ok := a.accounts.get(username); ok && hmac.Equal(hash, acct.SecretHash) {
		return acct, nil
	}
	acct, err := a.store.AccountByUsername(ctx, username)
	switch verity.ErrorCode(err) {
	case "":
		a.accounts.put(username, acct)
	case verity.ENOTFOUND:
		acct = nil
	default:
		return nil, err
	}
	stored := dummyHash
	if acct != nil {
		stored = acct.SecretHash
	}
	if !hmac.Equal(hash, stored) || acct == nil {
		return nil, wrongCredentials()
	}
	return acct, nil
}

func wrongCredentials() error { return verity.Errorf(verity.EUNAUTHORIZED, "wrong credentials") }

func validateUsername(name string) error {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) {
		return verity.Errorf(verity.EINVALID, "account name must be 1 to 64 characters")
	}
	if strings.ContainsAny(name, ": \t\r\n") {
		return verity.Errorf(verity.EINVALID, "account name must not contain a colon or white space")
	}
	return nil
}

// accountGone tells a conflict caused by an account deleted meanwhile (its
// foreign key refused the service; the cache still had it) from a duplicate.
func (a *App) accountGone(ctx context.Context, username string) bool {
	a.accounts.forget(username)
	_, err := a.store.AccountByUsername(ctx, username)
	return verity.ErrorCode(err) == verity.ENOTFOUND
}
