package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sender/webhook"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// captured is what the gateway saw of one request.
type captured struct {
	method string
	header http.Header
	body   []byte
}

// testMessage returns a message whose text and number must never leak.
func testMessage() verity.Message {
	return verity.Message{
		ID:        "msg-1",
		To:        "+37255512345",
		From:      "Verity",
		Text:      "Your PIN is 739146",
		ServiceID: "svc-1",
		CreatedAt: time.Date(2024, 5, 1, 14, 30, 15, 123456789, time.FixedZone("EEST", 3*3600)),
	}
}

// NewGateway starts a test gateway that records each request and answers status.
func NewGateway(tb testing.TB, status int) (*httptest.Server, <-chan captured) {
	tb.Helper()
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- captured{method: r.Method, header: r.Header.Clone(), body: body}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, strings.Repeat("x", 1<<20)) // more than Send drains
	}))
	tb.Cleanup(srv.Close)
	return srv, got
}

// MustNew returns a Sender for cfg or fails the test.
func MustNew(tb testing.TB, cfg webhook.Config) *webhook.Sender {
	tb.Helper()
	s, err := webhook.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

func TestSend(t *testing.T) {
	t.Run("posts the message as signed json", func(t *testing.T) {
		srv, got := NewGateway(t, http.StatusAccepted)
		now := time.Unix(1714563015, 0)
		s := MustNew(t, webhook.Config{URL: srv.URL + "/sms", Secret: testSecret, Now: func() time.Time { return now }})

		if err := s.Send(context.Background(), testMessage()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		req := <-got

		if got, want := req.method, http.MethodPost; got != want {
			t.Fatalf("method = %q, want %q", got, want)
		}
		if got, want := req.header.Get("Content-Type"), "application/json"; got != want {
			t.Fatalf("Content-Type = %q, want %q", got, want)
		}
		if got, want := req.header.Get(webhook.TimestampHeader), "1714563015"; got != want {
			t.Fatalf("timestamp = %q, want %q", got, want)
		}
		if got, want := req.header.Get("Idempotency-Key"), "msg-1"; got != want {
			t.Fatalf("Idempotency-Key = %q, want the message id %q", got, want)
		}

		var fields map[string]any
		if err := json.Unmarshal(req.body, &fields); err != nil {
			t.Fatalf("body is not json: %v", err)
		}
		want := map[string]any{
			"id":         "msg-1",
			"to":         "+37255512345",
			"from":       "Verity",
			"text":       "Your PIN is 739146",
			"service_id": "svc-1",
			"created_at": "2024-05-01T11:30:15.123456Z",
		}
		if len(fields) != len(want) {
			t.Fatalf("body has %d fields, want %d: %s", len(fields), len(want), req.body)
		}
		for k, v := range want {
			if got := fields[k]; got != v {
				t.Fatalf("body[%q] = %v, want %v", k, got, v)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, fields["created_at"].(string)); err != nil {
			t.Fatalf("created_at is not RFC 3339: %v", err)
		}

		sig := req.header.Get(webhook.SignatureHeader)
		if got, want := sig, "v1="+webhook.Sign(testSecret, "1714563015", req.body); got != want {
			t.Fatalf("signature = %q, want %q", got, want)
		}
		if err := webhook.Verify(testSecret, req.header.Get(webhook.TimestampHeader), sig, req.body, now.Add(time.Minute), time.Minute); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})

	t.Run("any 2xx answer means accepted", func(t *testing.T) {
		for _, status := range []int{200, 201, 202, 204, 299} {
			srv, _ := NewGateway(t, status)
			s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})
			if err := s.Send(context.Background(), testMessage()); err != nil {
				t.Fatalf("status %d: Send = %v, want nil", status, err)
			}
		}
	})

	t.Run("a non-2xx answer is an upstream refusal", func(t *testing.T) {
		for _, status := range []int{302, 307, 400, 401, 404, 429, 500, 503} {
			srv, got := NewGateway(t, status)
			s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})
			err := s.Send(context.Background(), testMessage())
			<-got
			if got, want := verity.ErrorCode(err), verity.EUPSTREAM; got != want {
				t.Fatalf("status %d: code = %q, want %q (%v)", status, got, want, err)
			}
			if got, want := verity.ErrorMessage(err), fmt.Sprintf("sms gateway refused the message (status %d)", status); got != want {
				t.Fatalf("status %d: message = %q, want %q", status, got, want)
			}
			if errors.Is(err, verity.ErrMaybeDelivered) {
				t.Fatalf("status %d: err = %v, want a plain refusal", status, err)
			}
			assertNoLeak(t, err)
		}
	})

	t.Run("502 and 504, a proxy's answers for a gateway behind it, may leave the message delivered", func(t *testing.T) {
		for _, status := range []int{http.StatusBadGateway, http.StatusGatewayTimeout} {
			srv, got := NewGateway(t, status)
			s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})
			err := s.Send(context.Background(), testMessage())
			<-got
			if verity.ErrorCode(err) != verity.EUPSTREAM || !errors.Is(err, verity.ErrMaybeDelivered) {
				t.Fatalf("status %d: err = %v, want upstream and verity.ErrMaybeDelivered", status, err)
			}
			assertNoLeak(t, err)
		}
	})

	t.Run("a redirect is not followed", func(t *testing.T) {
		target, got := NewGateway(t, http.StatusOK)
		redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
		t.Cleanup(redirect.Close)
		s := MustNew(t, webhook.Config{URL: redirect.URL, Secret: testSecret, Client: &http.Client{}})

		err := s.Send(context.Background(), testMessage())
		if got, want := verity.ErrorCode(err), verity.EUPSTREAM; got != want {
			t.Fatalf("code = %q, want %q", got, want)
		}
		select {
		case <-got:
			t.Fatal("the redirect target received the message")
		default:
		}
	})

	t.Run("a gateway slower than the timeout is unavailable, and may have the message", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) }) // runs first, so Close does not wait
		s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret, Timeout: 50 * time.Millisecond})

		err := s.Send(context.Background(), testMessage())
		if got, want := verity.ErrorCode(err), verity.EUNAVAILABLE; got != want {
			t.Fatalf("code = %q, want %q (%v)", got, want, err)
		}
		if got, want := verity.ErrorMessage(err), "sms gateway did not answer: the message may still arrive, and counts as sent"; got != want {
			t.Fatalf("message = %q, want %q", got, want)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, verity.ErrMaybeDelivered) {
			t.Fatalf("err = %v, want it to wrap context.DeadlineExceeded and verity.ErrMaybeDelivered", err)
		}
		assertNoLeak(t, err)
	})

	t.Run("a gateway that drops the connection after reading the request may have the message", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}))
		t.Cleanup(srv.Close)
		s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})

		err := s.Send(context.Background(), testMessage())
		if verity.ErrorCode(err) != verity.EUNAVAILABLE || !errors.Is(err, verity.ErrMaybeDelivered) {
			t.Fatalf("err = %v, want unavailable and verity.ErrMaybeDelivered", err)
		}
		assertNoLeak(t, err)
	})

	t.Run("an unreachable gateway is unavailable and its token is not shown", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		s := MustNew(t, webhook.Config{URL: srv.URL + "/sms?token=gw-token-s3cret", Secret: testSecret})

		err := s.Send(context.Background(), testMessage())
		if got, want := verity.ErrorCode(err), verity.EUNAVAILABLE; got != want {
			t.Fatalf("code = %q, want %q (%v)", got, want, err)
		}
		if !strings.Contains(err.Error(), srv.URL+"/sms") {
			t.Fatalf("error %q does not name the gateway url", err)
		}
		if strings.Contains(err.Error(), "gw-token-s3cret") {
			t.Fatalf("error %q shows the url's query", err)
		}
		if errors.Is(err, verity.ErrMaybeDelivered) {
			t.Fatalf("err = %v: a gateway never reached cannot have the message", err)
		}
		if got, want := verity.ErrorMessage(err), "sms gateway unavailable"; got != want {
			t.Fatalf("message = %q, want %q", got, want)
		}
		assertNoLeak(t, err)
	})

	t.Run("a cancelled context stops the send", func(t *testing.T) {
		srv, _ := NewGateway(t, http.StatusOK)
		s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		err := s.Send(ctx, testMessage())
		if got, want := verity.ErrorCode(err), verity.EUNAVAILABLE; got != want {
			t.Fatalf("code = %q, want %q", got, want)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want it to wrap context.Canceled", err)
		}
		if errors.Is(err, verity.ErrMaybeDelivered) {
			t.Fatalf("err = %v: a send cancelled before it began cannot have been delivered", err)
		}
	})
}

// assertNoLeak fails if err's full text shows the PIN text or the phone number.
func assertNoLeak(tb testing.TB, err error) {
	tb.Helper()
	m := testMessage()
	for _, secret := range []string{m.Text, "739146", m.To, "55512345"} {
		if strings.Contains(err.Error(), secret) {
			tb.Fatalf("error %q leaks %q", err, secret)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
		want string // "" for valid
	}{
		{"accepts an https url and a long secret", webhook.Config{URL: "https://gw.example/sms", Secret: testSecret}, ""},
		{"accepts an http url", webhook.Config{URL: "http://127.0.0.1:8080/sms", Secret: testSecret, Timeout: time.Second}, ""},
		{"rejects an empty url", webhook.Config{URL: "", Secret: testSecret}, "url"},
		{"rejects a relative url", webhook.Config{URL: "/sms", Secret: testSecret}, "url"},
		{"rejects a url without a host", webhook.Config{URL: "https:///sms", Secret: testSecret}, "url"},
		{"rejects another scheme", webhook.Config{URL: "ftp://gw.example/sms", Secret: testSecret}, "url"},
		{"rejects an unparsable url", webhook.Config{URL: "https://gw example/%zz", Secret: testSecret}, "url"},
		{"rejects a missing secret", webhook.Config{URL: "https://gw.example/sms"}, "secret"},
		{"rejects a 15-byte secret", webhook.Config{URL: "https://gw.example/sms", Secret: []byte("0123456789abcde")}, "secret"},
		{"rejects a negative timeout", webhook.Config{URL: "https://gw.example/sms", Secret: testSecret, Timeout: -time.Second}, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := webhook.New(tt.cfg)
			if tt.want == "" {
				if err != nil || s == nil {
					t.Fatalf("New = %v, %v; want a sender", s, err)
				}
				return
			}
			if got, want := verity.ErrorCode(err), verity.EINVALID; got != want {
				t.Fatalf("code = %q, want %q (%v)", got, want, err)
			}
			if msg := verity.ErrorMessage(err); !strings.Contains(msg, tt.want) {
				t.Fatalf("message = %q, want it to mention %q", msg, tt.want)
			}
		})
	}
}

func TestNewCopiesTheSecret(t *testing.T) {
	srv, got := NewGateway(t, http.StatusOK)
	secret := slices.Clone(testSecret)
	s := MustNew(t, webhook.Config{URL: srv.URL, Secret: secret})
	secret[0] ^= 0xff // the caller reuses its buffer

	if err := s.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	req := <-got
	if err := webhook.Verify(testSecret, req.header.Get(webhook.TimestampHeader), req.header.Get(webhook.SignatureHeader), req.body, time.Now(), 0); err != nil {
		t.Fatalf("Verify with the original secret: %v", err)
	}
}

// TestSendKeepsConnectionsForTheNextMessages sends rounds of concurrent
// messages: after the first round, they must go over the connections the
// first one opened, not a new connection per message (net/http's default
// keeps only two idle connections per host).
func TestSendKeepsConnectionsForTheNextMessages(t *testing.T) {
	var newConns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s := MustNew(t, webhook.Config{URL: srv.URL, Secret: testSecret})

	const inFlight, rounds = 16, 5
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, inFlight)
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Send(context.Background(), testMessage())
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A connection goes back to the pool a moment after its answer is read,
	// so a round can start before the last one's are all back and dial a
	// few more (it did in about one run of ten). Keeping only two idle
	// connections, net/http's default, dials some 14 a round: 70 or so.
	if n := newConns.Load(); n > 2*inFlight {
		t.Fatalf("%d rounds of %d concurrent messages opened %d connections, want at most %d", rounds, inFlight, n, 2*inFlight)
	}
}
