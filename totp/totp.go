// Package totp implements RFC 4226 HOTP and RFC 6238 TOTP for authenticator-app
// enrolment, returning the time step a code matched so callers can block replays.
//
// The HMAC truncation core is written here with crypto/hmac rather than taken from
// github.com/pquerna/otp because that library only answers "valid or not": it does not
// report which time step matched, and replay protection (one use per (subject, step),
// see security-invariants.md §3) needs exactly that step.
package totp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"time"
)

// Algorithm names the HMAC hash function used to derive codes.
type Algorithm string

// The hash algorithms RFC 6238 defines, spelled as in otpauth:// URIs.
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// newHash returns the hash constructor for a, or nil if a is not supported.
func (a Algorithm) newHash() func() hash.Hash {
	switch a {
	case SHA1:
		return sha1.New
	case SHA256:
		return sha256.New
	case SHA512:
		return sha512.New
	}
	return nil
}

// secretSize is the seed length RFC 6238 uses for a: the hash's output size.
func (a Algorithm) secretSize() int {
	switch a {
	case SHA1:
		return 20
	case SHA256:
		return 32
	case SHA512:
		return 64
	}
	return 0
}

// Params describes how codes are derived and how much clock drift is accepted.
type Params struct {
	Algorithm Algorithm // SHA1, SHA256 or SHA512
	Digits    int       // 6 or 8
	Period    int       // step length in seconds: 30 or 60
	Skew      int       // steps accepted on each side of the current one: 0 to 2
}

// DefaultParams returns the parameters every authenticator app supports: SHA1, 6 digits, 30 s, ±1 step.
func DefaultParams() Params {
	return Params{Algorithm: SHA1, Digits: 6, Period: 30, Skew: 1}
}

// Validate reports whether p is a supported combination of parameters.
func (p Params) Validate() error {
	if p.Algorithm.newHash() == nil {
		return fmt.Errorf("totp: unsupported algorithm %q", p.Algorithm)
	}
	if p.Digits != 6 && p.Digits != 8 {
		return fmt.Errorf("totp: digits must be 6 or 8, got %d", p.Digits)
	}
	if p.Period != 30 && p.Period != 60 {
		return fmt.Errorf("totp: period must be 30 or 60 seconds, got %d", p.Period)
	}
	if p.Skew < 0 || p.Skew > 2 {
		return fmt.Errorf("totp: skew must be between 0 and 2 steps, got %d", p.Skew)
	}
	return nil
}

// pow10 holds 10^d for the digit counts HOTP accepts (1 to 9).
var pow10 = [...]uint32{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

// HOTP returns the RFC 4226 one-time code for counter, zero-padded to digits; it panics if digits is outside 1–9 or alg is unsupported, which are programming errors.
func HOTP(secret []byte, counter uint64, digits int, alg Algorithm) string {
	newHash := alg.newHash()
	if newHash == nil {
		panic(fmt.Sprintf("totp: unsupported algorithm %q", alg))
	}
	if digits < 1 || digits >= len(pow10) {
		panic(fmt.Sprintf("totp: unsupported number of digits %d", digits))
	}
	buf := make([]byte, digits)
	hotpInto(hmac.New(newHash, secret), counter, buf)
	return string(buf)
}

// hotpInto writes the HOTP code for counter, len(buf) digits, into buf,
// using mac (an HMAC keyed with the secret), which it resets first. Match
// keys one HMAC for all its candidates: keying costs more than the MAC of
// an 8-byte counter.
func hotpInto(mac hash.Hash, counter uint64, buf []byte) {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Reset()
	mac.Write(msg[:])
	var sumBuf [64]byte // the largest supported digest, SHA-512
	sum := mac.Sum(sumBuf[:0])

	// Dynamic truncation, RFC 4226 §5.3.
	offset := sum[len(sum)-1] & 0x0f
	value := binary.BigEndian.Uint32(sum[offset:offset+4]) & 0x7fffffff
	value %= pow10[len(buf)]

	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = byte('0' + value%10)
		value /= 10
	}
}

// Step returns the RFC 6238 time step containing t for a period in seconds; period must be positive.
func Step(t time.Time, period int) int64 {
	sec, p := t.Unix(), int64(period)
	step := sec / p
	// Floor rather than truncate so instants before 1970 do not share step 0.
	if sec%p != 0 && sec < 0 {
		step--
	}
	return step
}

// Code returns the TOTP code for step under p; it panics if p is invalid, so validate stored parameters first.
func Code(secret []byte, step int64, p Params) string {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	if step < 0 {
		panic("totp: negative time step")
	}
	return HOTP(secret, uint64(step), p.Digits, p.Algorithm)
}

// Match reports whether code is valid at now within p.Skew steps and, if so, which step it matched.
//
// Callers must record the returned step and refuse a second use of the same (or an
// earlier) step for the same subject; Match itself is stateless. Codes of the wrong
// length or with characters other than ASCII digits are refused; normalising user
// input (spaces, full-width digits) is the caller's job. Invalid params are refused.
func Match(secret []byte, code string, now time.Time, p Params) (step int64, ok bool) {
	if p.Validate() != nil {
		return 0, false
	}
	// Length and alphabet are properties of the user's input, not of the secret, so an
	// early return here leaks nothing about the seed.
	if len(code) != p.Digits {
		return 0, false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0, false
		}
	}

	current := Step(now, p.Period)
	given := []byte(code)
	mac := hmac.New(p.Algorithm.newHash(), secret) // Validate vouched for the algorithm
	candidateCode := make([]byte, p.Digits)
	var found int64
	matched := 0
	// Candidates in order of distance from now (0, -1, +1, -2, +2) so that, in the
	// unlikely case two steps share a code, the one closest to the server clock wins.
	// Every candidate is computed and compared; the winner is picked with masks so the
	// time taken does not reveal which step matched.
	for i := 0; i <= 2*p.Skew; i++ {
		offset := int64((i + 1) / 2)
		if i%2 == 1 {
			offset = -offset
		}
		candidate := current + offset
		if candidate < 0 {
			continue // only reachable for clocks set before 1970
		}
		hotpInto(mac, uint64(candidate), candidateCode)
		eq := subtle.ConstantTimeCompare(candidateCode, given)
		take := eq &^ matched
		mask := -int64(take) // all ones when take == 1
		found = (candidate & mask) | (found &^ mask)
		matched |= eq
	}
	return found, matched == 1
}
