// Package schema holds the migration checks both SQL stores share.
package schema

import (
	"context"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"
)

// CheckNotNewer refuses a database whose schema version is newer than the
// migrations this binary embeds: an old node must not write to a schema it
// does not understand.
func CheckNotNewer(ctx context.Context, p *goose.Provider) error {
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	known := int64(0)
	for _, s := range p.ListSources() {
		known = max(known, s.Version)
	}
	if current > known {
		return &NewerError{Version: current, Known: known}
	}
	return nil
}

// NewerError is CheckNotNewer's error for a schema newer than this
// binary's.
type NewerError struct {
	Version int64 // the database's schema version
	Known   int64 // the newest version this binary embeds
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary understands (%d): upgrade verity", e.Version, e.Known)
}

// ErrOlder is CheckCurrent's error for a schema that migrations are
// pending on.
var ErrOlder = errors.New("database schema is older than this binary: run `verity migrate`")

// CheckCurrent returns an error unless the schema is exactly the one this
// binary embeds.
func CheckCurrent(ctx context.Context, p *goose.Provider) error {
	if err := CheckNotNewer(ctx, p); err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}
	if pending {
		return ErrOlder
	}
	return nil
}
