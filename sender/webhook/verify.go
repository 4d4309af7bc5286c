package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/verityhq/verity"
)

// DefaultTolerance is how far a timestamp may be from now when Verify is given
// a tolerance of zero or less.
const DefaultTolerance = 5 * time.Minute

// ErrTimestamp is the cause Verify reports for a missing, malformed or
// out-of-tolerance timestamp.
var ErrTimestamp = errors.New("webhook timestamp missing, malformed or outside tolerance")

// ErrSignature is the cause Verify reports for a missing or wrong signature.
var ErrSignature = errors.New("webhook signature missing or wrong")

// ErrSecret is the cause Verify reports when the secret is shorter than
// MinSecretLen, which would let anyone forge signatures.
var ErrSecret = errors.New("webhook secret too short")

// Sign returns the lower-case hex HMAC-SHA256 of timestamp + "." + body
// under secret, without the "v1=" prefix.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's X-Verity-Timestamp and X-Verity-Signature
// values against its raw body and returns nil only if they match and the
// timestamp is within tolerance of now; failures are EUNAUTHORIZED errors
// wrapping ErrTimestamp, ErrSignature or ErrSecret.
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	fail := func(cause error) error {
		return &verity.Error{Code: verity.EUNAUTHORIZED, Message: "invalid webhook signature", Op: "webhook.Verify", Err: cause}
	}
	if len(secret) < MinSecretLen {
		return fail(ErrSecret)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}

	// Digits only: Send never writes a sign, and a strict parse keeps the Go
	// and Python recipes in agreement.
	if timestamp == "" || strings.TrimLeft(timestamp, "0123456789") != "" {
		return fail(ErrTimestamp)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fail(ErrTimestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fail(ErrTimestamp)
	}

	got, ok := strings.CutPrefix(signature, SignaturePrefix)
	if !ok {
		return fail(ErrSignature)
	}
	gotMAC, err := hex.DecodeString(got)
	if err != nil {
		return fail(ErrSignature)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	if !hmac.Equal(gotMAC, mac.Sum(nil)) {
		return fail(ErrSignature)
	}
	return nil
}
