package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sender/webhook"
)

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"msg-1","text":"Your PIN is 739146"}`)
	signedAt := time.Unix(1714563015, 0)
	ts := "1714563015"
	sig := "v1=" + webhook.Sign(testSecret, ts, body)

	tests := []struct {
		name      string
		secret    []byte
		timestamp string
		signature string
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error // nil, ErrTimestamp, ErrSignature or ErrSecret
	}{
		{"accepts the signed request", testSecret, ts, sig, body, signedAt, time.Minute, nil},
		{"accepts a timestamp at the edge of tolerance", testSecret, ts, sig, body, signedAt.Add(time.Minute), time.Minute, nil},
		{"accepts a clock slightly behind the sender", testSecret, ts, sig, body, signedAt.Add(-time.Minute), time.Minute, nil},
		{"accepts an upper-case hex signature", testSecret, ts, "v1=" + strings.ToUpper(sig[3:]), body, signedAt, time.Minute, nil},
		{"uses five minutes for a zero tolerance", testSecret, ts, sig, body, signedAt.Add(4 * time.Minute), 0, nil},
		{"rejects a wrong secret", []byte("another-secret-of-16+bytes"), ts, sig, body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a tampered body", testSecret, ts, sig, []byte(`{"id":"msg-1","text":"Your PIN is 000000"}`), signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a timestamp swapped for another", testSecret, "1714563016", sig, body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects an old timestamp", testSecret, ts, sig, body, signedAt.Add(time.Minute + time.Second), time.Minute, webhook.ErrTimestamp},
		{"rejects a timestamp from the future", testSecret, ts, sig, body, signedAt.Add(-time.Minute - time.Second), time.Minute, webhook.ErrTimestamp},
		{"rejects an old timestamp under the default tolerance", testSecret, ts, sig, body, signedAt.Add(6 * time.Minute), 0, webhook.ErrTimestamp},
		{"rejects a missing timestamp", testSecret, "", sig, body, signedAt, time.Minute, webhook.ErrTimestamp},
		{"rejects a signed timestamp", testSecret, "+" + ts, sig, body, signedAt, time.Minute, webhook.ErrTimestamp},
		{"rejects a non-numeric timestamp", testSecret, "2024-05-01T11:30:15Z", sig, body, signedAt, time.Minute, webhook.ErrTimestamp},
		{"rejects a huge timestamp", testSecret, strings.Repeat("9", 30), sig, body, signedAt, time.Minute, webhook.ErrTimestamp},
		{"rejects a missing signature", testSecret, ts, "", body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a signature without the scheme", testSecret, ts, sig[3:], body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects another scheme", testSecret, ts, "v0=" + sig[3:], body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a truncated signature", testSecret, ts, sig[:len(sig)-2], body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a non-hex signature", testSecret, ts, "v1=" + strings.Repeat("zz", 32), body, signedAt, time.Minute, webhook.ErrSignature},
		{"rejects a short secret even if the signature matches", []byte("short"), ts, "v1=" + webhook.Sign([]byte("short"), ts, body), body, signedAt, time.Minute, webhook.ErrSecret},
		{"rejects an empty secret", nil, ts, "v1=" + webhook.Sign(nil, ts, body), body, signedAt, time.Minute, webhook.ErrSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(tt.secret, tt.timestamp, tt.signature, tt.body, tt.now, tt.tolerance)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if got, want := verity.ErrorCode(err), verity.EUNAUTHORIZED; got != want {
				t.Fatalf("code = %q, want %q", got, want)
			}
		})
	}
}

func TestSignIsLowerCaseHexSHA256(t *testing.T) {
	// Computed independently: printf '1714563015.{}' | openssl dgst -sha256 -hmac 0123456789abcdef-test-secret
	got := webhook.Sign(testSecret, "1714563015", []byte("{}"))
	if want := "ed62b7e49c91b750a112383f9573b2007f3bcacd7262b1fd527edfd7c592d55b"; got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}
