package totp

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// secretEncoding is the unpadded base32 alphabet authenticator apps expect.
var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// GenerateSecret returns a new random seed as long as alg's hash output (20, 32 or 64 bytes), as RFC 6238 uses.
func GenerateSecret(alg Algorithm) ([]byte, error) {
	n := alg.secretSize()
	if n == 0 {
		return nil, fmt.Errorf("totp: unsupported algorithm %q", alg)
	}
	secret := make([]byte, n)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("totp: generate secret: %w", err)
	}
	return secret, nil
}

// EncodeSecret returns secret as unpadded base32, the form used in otpauth:// URIs and for manual entry.
func EncodeSecret(secret []byte) string {
	return secretEncoding.EncodeToString(secret)
}

// URI returns the otpauth://totp/ key URI an authenticator app scans to enrol secret under p.
//
// The URI is built here rather than with pquerna/otp's totp.Generate because that
// function also generates the secret and uses its own parameter types; what remains
// is a few lines of net/url. The label is "issuer:account" with each part
// path-escaped (a colon or plus sign inside either part is escaped too, so the
// separator stays the only literal colon and no app reads "+" as a space); with an empty issuer the label is the account alone and no issuer
// parameter is sent. Each part is cut to maxLabelPartBytes first (see there).
// The URI contains the secret: never log it.
func URI(issuer, account string, secret []byte, p Params) string {
	issuer, account = cutLabelPart(issuer), cutLabelPart(account)
	label := escapeLabel(account)
	if issuer != "" {
		label = escapeLabel(issuer) + ":" + label
	}

	// Parameters in the order of Google's key-URI documentation; url.Values.Encode
	// would sort them and turn spaces into "+", which some apps show literally.
	var q strings.Builder
	q.WriteString("secret=")
	q.WriteString(EncodeSecret(secret))
	if issuer != "" {
		q.WriteString("&issuer=")
		q.WriteString(escapeQuery(issuer))
	}
	q.WriteString("&algorithm=")
	q.WriteString(escapeQuery(string(p.Algorithm)))
	q.WriteString("&digits=")
	q.WriteString(strconv.Itoa(p.Digits))
	q.WriteString("&period=")
	q.WriteString(strconv.Itoa(p.Period))

	return "otpauth://totp/" + label + "?" + q.String()
}

// maxLabelPartBytes bounds the issuer and the account name in a URI, in
// UTF-8 bytes. Verity accepts service names of 200 characters and user names
// of 255, and escaped (up to 12 bytes for a 4-byte character) they could
// make a URI longer than the largest QR code holds (2,331 bytes at QR's
// medium error correction). Cut to 64 bytes, the longest URI (the issuer
// twice, an account, a SHA-512 seed) stays under 800 bytes, a code that
// still gets two pixels per module at 256 pixels; authenticator apps show
// less of a label than that anyway.
const maxLabelPartBytes = 64

// cutLabelPart returns the longest prefix of s of at most maxLabelPartBytes
// bytes that ends at a character boundary.
func cutLabelPart(s string) string {
	if len(s) <= maxLabelPartBytes {
		return s
	}
	end := maxLabelPartBytes
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end]
}

// labelEscaper escapes what url.PathEscape leaves literal but a label must not contain.
var labelEscaper = strings.NewReplacer(":", "%3A", "+", "%2B")

// escapeLabel path-escapes one part of the label, including any colon or plus sign in it.
func escapeLabel(s string) string {
	return labelEscaper.Replace(url.PathEscape(s))
}

// escapeQuery query-escapes s with spaces as %20 rather than "+".
func escapeQuery(s string) string {
	// QueryEscape encodes a literal "+" as %2B, so every "+" left is a space.
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
