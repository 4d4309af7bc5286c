package verity

import "time"

// Service is an application registered by an account; it owns users and a
// verification policy.
type Service struct {
	ID        string
	AccountID string
	Name      string
	FQDN      string
	Settings  Settings
	CreatedAt time.Time
}

// Settings is a service's verification policy. The zero value is not valid:
// start from DefaultSettings. Field names are the JSON names of the settings
// endpoint.
type Settings struct {
	PINLength             int    `json:"pin_length"`              // digits, 4–10
	PINValidityMinutes    int    `json:"pin_validity_minutes"`    // 1–30
	MaxAttempts           int    `json:"max_attempts"`            // wrong tries per PIN, 1–10
	MaxSends              int    `json:"max_sends"`               // PIN sends per user per send window, 1–20
	SendWindowMinutes     int    `json:"send_window_minutes"`     // 1–1440
	ResendIntervalSeconds int    `json:"resend_interval_seconds"` // minimum gap between two sends, 10–600
	FailureLimit          int    `json:"failure_limit"`           // wrong tries per user per failure window, 3–100
	FailureWindowMinutes  int    `json:"failure_window_minutes"`  // 1–1440
	MessageTemplate       string `json:"message_template"`        // must contain <PIN>; {service} is the service name
	SenderName            string `json:"sender_name"`             // SMS "from"

	// Authenticator apps (RFC 6238). Changes apply to new enrolments only:
	// an enrolled app keeps the parameters its QR code carried.
	TOTPAlgorithm     string `json:"totp_algorithm"`      // SHA1, SHA256 or SHA512
	TOTPDigits        int    `json:"totp_digits"`         // 6 or 8
	TOTPPeriodSeconds int    `json:"totp_period_seconds"` // 30 or 60
	TOTPWindow        int    `json:"totp_window"`         // steps accepted each side of now, 0–2
}

// DefaultSettings returns the policy a new service starts with.
func DefaultSettings() Settings {
	return Settings{
		PINLength:             6,
		PINValidityMinutes:    5,
		MaxAttempts:           5,
		MaxSends:              5,
		SendWindowMinutes:     10,
		ResendIntervalSeconds: 30,
		FailureLimit:          10,
		FailureWindowMinutes:  60,
		MessageTemplate:       "Your {service} code is <PIN>",
		SenderName:            "Verity",
		TOTPAlgorithm:         "SHA1",
		TOTPDigits:            6,
		TOTPPeriodSeconds:     30,
		TOTPWindow:            1,
	}
}

// PINValidity is how long a PIN may be checked after it was started.
func (s Settings) PINValidity() time.Duration {
	return time.Duration(s.PINValidityMinutes) * time.Minute
}

// SendWindow is the window over which MaxSends is counted.
func (s Settings) SendWindow() time.Duration {
	return time.Duration(s.SendWindowMinutes) * time.Minute
}

// ResendInterval is the minimum gap between two sends to one user.
func (s Settings) ResendInterval() time.Duration {
	return time.Duration(s.ResendIntervalSeconds) * time.Second
}

// FailureWindow is the window over which FailureLimit is counted.
func (s Settings) FailureWindow() time.Duration {
	return time.Duration(s.FailureWindowMinutes) * time.Minute
}
