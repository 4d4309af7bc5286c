package verity

import "time"

// User is a person of a service who verifies with a PIN or an app.
type User struct {
	ID          string
	ServiceID   string
	IDInService string // the application's own name for the user
	Phone       string // E.164
	PhoneType   string // libphonenumber's number type, e.g. "MOBILE", "UNKNOWN"
	CreatedAt   time.Time
	// LastMethod is "totp" after a start with the authenticator app and
	// until an SMS start follows, which makes it "sms". It is "" until the
	// first start that changes it: a user whose first starts were SMS keeps
	// "", which every reader takes as "not the app", so those starts never
	// write the user's row.
	LastMethod string

	// The per-user failure budget: wrong tries counted in a fixed window that
	// starts at the first failure. Sending a new PIN never resets it.
	FailureCount       int
	FailureWindowStart time.Time // zero when none is on record: never counted, or a lapsed window the janitor dropped
}

// MaskPhone returns an E.164 number with all but its last four digits
// hidden, for logs.
func MaskPhone(e164 string) string {
	if len(e164) <= 4 {
		return "****"
	}
	return "***" + e164[len(e164)-4:]
}
