package postgres

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/verityhq/verity"
)

// SQLSTATE codes the store acts on (PostgreSQL manual, appendix A).
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeSerialization       = "40001"
	codeDeadlock            = "40P01"
	codeQueryCanceled       = "57014" // statement_timeout, or a cancel request
	codeLockNotAvailable    = "55P03" // lock_timeout
	codeBadCharacter        = "22021" // character_not_in_repertoire: invalid UTF-8, NUL
	codeUntranslatable      = "22P05"
	codeTooManyConnections  = "53300"
	codeAdminShutdown       = "57P01"
	codeCrashShutdown       = "57P02"
	codeCannotConnectNow    = "57P03"
)

// translate maps driver errors to verity errors by SQLSTATE, never by
// message text. The cause stays in the chain for the log.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &verity.Error{Code: verity.ENOTFOUND, Op: op, Err: err}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == codeUniqueViolation, pe.Code == codeForeignKeyViolation:
			return &verity.Error{Code: verity.ECONFLICT, Op: op, Err: err}
		case pe.Code == codeBadCharacter, pe.Code == codeUntranslatable:
			return badText(op)
		case strings.HasPrefix(pe.Code, "08"), pe.Code == codeTooManyConnections,
			pe.Code == codeAdminShutdown, pe.Code == codeCrashShutdown, pe.Code == codeCannotConnectNow:
			return unavailable(op, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) {
		return unavailable(op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func unavailable(op string, err error) error {
	return &verity.Error{Code: verity.EUNAVAILABLE, Op: op, Message: "database unavailable", Err: err}
}

// hasCode reports whether err carries the SQLSTATE code.
func hasCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// notFound reports a missing row for op.
func notFound(op string) error {
	return &verity.Error{Code: verity.ENOTFOUND, Op: op}
}

// storable reports whether PostgreSQL can hold every s in a text column: it
// refuses invalid UTF-8 and NUL, which SQLite keeps. A key that is not
// storable matches no row, so lookups answer "not found" at once, exactly
// as the SQLite store does, instead of failing on the server with a 5xx.
func storable(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
	return true
}

// checkText refuses to write text PostgreSQL cannot hold before it is sent,
// as EINVALID. That also keeps a NUL out of the query text the simple
// protocol builds, where the server would reject the whole message.
func checkText(op string, ss ...string) error {
	if !storable(ss...) {
		return badText(op)
	}
	return nil
}

func badText(op string) error {
	return &verity.Error{Code: verity.EINVALID, Op: op, Message: "text must be valid UTF-8 without NUL characters"}
}
