package app

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/verityhq/verity"
)

// pinPlaceholder marks where the code goes in a message template.
const pinPlaceholder = "<PIN>"

// ValidateSettings checks every policy field against its allowed range.
func ValidateSettings(s verity.Settings) error {
	ranges := []struct {
		name     string
		value    int
		min, max int
	}{
		{"pin_length", s.PINLength, 4, 10},
		{"pin_validity_minutes", s.PINValidityMinutes, 1, 30},
		{"max_attempts", s.MaxAttempts, 1, 10},
		{"max_sends", s.MaxSends, 1, 20},
		{"send_window_minutes", s.SendWindowMinutes, 1, 1440},
		{"resend_interval_seconds", s.ResendIntervalSeconds, 10, 600},
		{"failure_limit", s.FailureLimit, 3, 100},
		{"failure_window_minutes", s.FailureWindowMinutes, 1, 1440},
	}
	for _, r := range ranges {
		if r.value < r.min || r.value > r.max {
			return verity.Errorf(verity.EINVALID, "%s must be between %d and %d", r.name, r.min, r.max)
		}
	}
	switch s.TOTPAlgorithm {
	case "SHA1", "SHA256", "SHA512":
	default:
		return verity.Errorf(verity.EINVALID, "totp_algorithm must be SHA1, SHA256 or SHA512")
	}
	if s.TOTPDigits != 6 && s.TOTPDigits != 8 {
		return verity.Errorf(verity.EINVALID, "totp_digits must be 6 or 8")
	}
	if s.TOTPPeriodSeconds != 30 && s.TOTPPeriodSeconds != 60 {
		return verity.Errorf(verity.EINVALID, "totp_period_seconds must be 30 or 60")
	}
	if s.TOTPWindow < 0 || s.TOTPWindow > 2 {
		return verity.Errorf(verity.EINVALID, "totp_window must be between 0 and 2")
	}
	if strings.Count(s.MessageTemplate, pinPlaceholder) != 1 {
		return verity.Errorf(verity.EINVALID, "message_template must contain %s exactly once", pinPlaceholder)
	}
	if utf8.RuneCountInString(s.MessageTemplate) > 300 || !utf8.ValidString(s.MessageTemplate) {
		return verity.Errorf(verity.EINVALID, "message_template must be at most 300 characters")
	}
	if !validSenderName(s.SenderName) {
		return verity.Errorf(verity.EINVALID, "sender_name must be 1 to 11 letters, digits or spaces, or a phone number of up to 15 digits with +")
	}
	return nil
}

// validSenderName accepts what SMS networks accept as an originator: an
// alphanumeric name of up to 11 characters or an international number.
func validSenderName(name string) bool {
	if strings.HasPrefix(name, "+") {
		digits := name[1:]
		return len(digits) >= 3 && len(digits) <= 15 && strings.Trim(digits, "0123456789") == ""
	}
	if name == "" || len(name) > 11 || strings.TrimSpace(name) == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' ') {
			return false
		}
	}
	return true
}

// renderMessage fills a template: {service} becomes the service name, <PIN>
// the code. The template is split at <PIN> first so that a service name
// containing "<PIN>" cannot capture the code's place.
func renderMessage(template, serviceName, pin string) string {
	before, after, _ := strings.Cut(template, pinPlaceholder)
	return strings.ReplaceAll(before, "{service}", serviceName) + pin + strings.ReplaceAll(after, "{service}", serviceName)
}

// printable reports whether s is valid UTF-8 without control characters:
// names end up in SMS texts, QR codes and logs.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
