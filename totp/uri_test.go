package totp_test

import (
	"bytes"
	"encoding/base32"
	"net/url"
	"strings"
	"testing"

	"github.com/verityhq/verity/totp"
)

func TestGenerateSecret(t *testing.T) {
	for _, tt := range []struct {
		alg  totp.Algorithm
		size int
	}{
		{totp.SHA1, 20},
		{totp.SHA256, 32},
		{totp.SHA512, 64},
	} {
		t.Run(string(tt.alg)+" secrets are the hash size and differ", func(t *testing.T) {
			a, err := totp.GenerateSecret(tt.alg)
			if err != nil {
				t.Fatalf("GenerateSecret: %v", err)
			}
			b, err := totp.GenerateSecret(tt.alg)
			if err != nil {
				t.Fatalf("GenerateSecret: %v", err)
			}
			if got, want := len(a), tt.size; got != want {
				t.Fatalf("len(secret) = %d, want %d", got, want)
			}
			if bytes.Equal(a, b) {
				t.Fatal("two generated secrets are equal")
			}
		})
	}
	t.Run("an unknown algorithm is an error", func(t *testing.T) {
		if _, err := totp.GenerateSecret("MD5"); err == nil {
			t.Fatal("GenerateSecret(MD5) succeeded, want error")
		}
	})
}

func TestEncodeSecret(t *testing.T) {
	// RFC 4648 §10 test vector, unpadded.
	if got, want := totp.EncodeSecret([]byte("foobar")), "MZXW6YTBOI"; got != want {
		t.Fatalf("EncodeSecret = %q, want %q", got, want)
	}
	secret := []byte("12345678901234567890")
	got, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(totp.EncodeSecret(secret))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("decode(EncodeSecret(secret)) = %q, %v; want %q", got, err, secret)
	}
}

func TestURI(t *testing.T) {
	secret := []byte("12345678901234567890")
	const b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	for _, tt := range []struct {
		name    string
		issuer  string
		account string
		p       totp.Params
		want    string
	}{
		{
			name: "default params", issuer: "Verity", account: "alice@example.com", p: totp.DefaultParams(),
			want: "otpauth://totp/Verity:alice@example.com?secret=" + b32 + "&issuer=Verity&algorithm=SHA1&digits=6&period=30",
		},
		{
			name: "spaces are percent-escaped in label and query", issuer: "Acme Co", account: "Jane Doe", p: totp.Params{Algorithm: totp.SHA256, Digits: 8, Period: 60, Skew: 1},
			want: "otpauth://totp/Acme%20Co:Jane%20Doe?secret=" + b32 + "&issuer=Acme%20Co&algorithm=SHA256&digits=8&period=60",
		},
		{
			name: "colons, slashes, ampersands and plus signs are escaped", issuer: "A&B:C", account: "x/y+z?", p: totp.DefaultParams(),
			want: "otpauth://totp/A&B%3AC:x%2Fy%2Bz%3F?secret=" + b32 + "&issuer=A%26B%3AC&algorithm=SHA1&digits=6&period=30",
		},
		{
			name: "an empty issuer leaves only the account", issuer: "", account: "bob", p: totp.DefaultParams(),
			want: "otpauth://totp/bob?secret=" + b32 + "&algorithm=SHA1&digits=6&period=30",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := totp.URI(tt.issuer, tt.account, secret, tt.p)
			if got != tt.want {
				t.Fatalf("URI =\n  %s\nwant\n  %s", got, tt.want)
			}
			// Whatever the escaping, a standard parser must read the parts back.
			u, err := url.Parse(got)
			if err != nil {
				t.Fatalf("url.Parse: %v", err)
			}
			wantLabel := tt.account
			if tt.issuer != "" {
				wantLabel = tt.issuer + ":" + tt.account
			}
			if got, want := u.Path, "/"+wantLabel; got != want {
				t.Fatalf("parsed path = %q, want %q", got, want)
			}
			q := u.Query()
			if got, want := q.Get("issuer"), tt.issuer; got != want {
				t.Fatalf("parsed issuer = %q, want %q", got, want)
			}
			if got, want := q.Get("secret"), b32; got != want {
				t.Fatalf("parsed secret = %q, want %q", got, want)
			}
		})
	}
}

func TestURICutsLongLabelsAtACharacterBoundary(t *testing.T) {
	seed := make([]byte, 64) // a SHA-512 seed, the longest
	p := totp.Params{Algorithm: totp.SHA512, Digits: 8, Period: 60, Skew: 1}
	for _, tt := range []struct {
		name, issuer, account   string
		wantIssuer, wantAccount string
	}{
		{
			name:   "three-byte characters: 21 of them, since a 22nd would end at byte 66",
			issuer: strings.Repeat("€", 200), account: strings.Repeat("€", 255),
			wantIssuer: strings.Repeat("€", 21), wantAccount: strings.Repeat("€", 21),
		},
		{
			name:   "ASCII: 64 bytes, escapes counted before escaping",
			issuer: strings.Repeat("a b", 40), account: strings.Repeat("x", 70) + "@example.com",
			wantIssuer: strings.Repeat("a b", 21) + "a", wantAccount: strings.Repeat("x", 64),
		},
		{
			name:   "four-byte characters: 16 of them, exactly 64 bytes",
			issuer: "Verity", account: strings.Repeat("😀", 100),
			wantIssuer: "Verity", wantAccount: strings.Repeat("😀", 16),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			uri := totp.URI(tt.issuer, tt.account, seed, p)
			u, err := url.Parse(uri)
			if err != nil {
				t.Fatalf("url.Parse: %v", err)
			}
			if got, want := u.Path, "/"+tt.wantIssuer+":"+tt.wantAccount; got != want {
				t.Fatalf("label = %q, want %q", got, want)
			}
			if got := u.Query().Get("issuer"); got != tt.wantIssuer {
				t.Fatalf("issuer parameter = %q, want %q", got, tt.wantIssuer)
			}
			if len(uri) >= 800 {
				t.Fatalf("URI is %d bytes, want under 800", len(uri))
			}
			if _, err := totp.QRPNG(uri, 256); err != nil {
				t.Fatalf("QRPNG: %v", err)
			}
		})
	}
}
