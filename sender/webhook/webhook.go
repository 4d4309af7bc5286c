package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/verityhq/verity"
)

// Header names and the signature scheme version written by Send.
const (
	TimestampHeader = "X-Verity-Timestamp" // TimestampHeader carries the unix seconds the request was signed at.
	SignatureHeader = "X-Verity-Signature" // SignatureHeader carries SignaturePrefix and the hex HMAC.
	SignaturePrefix = "v1="                // SignaturePrefix names the signature scheme.
)

// MinSecretLen is the shortest signing secret New and Verify accept, in bytes.
const MinSecretLen = 16

// DefaultTimeout bounds one delivery attempt when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// timeFormat is RFC 3339 in UTC with microseconds, the precision Verity's
// stores and the Verigator API use.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// maxDrain caps how much of a gateway's answer is read, so a misbehaving
// gateway cannot make us read forever; the rest is discarded by Close.
const maxDrain = 64 << 10

// Config configures a Sender.
type Config struct {
	URL     string        // absolute http or https endpoint of the gateway
	Secret  []byte        // HMAC key shared with the gateway, at least MinSecretLen bytes
	Timeout time.Duration // per-message limit; zero means DefaultTimeout
	Client  *http.Client  // optional; its redirect policy is replaced, see Send

	Now func() time.Time // optional clock for the signature timestamp; defaults to time.Now
}

// Sender posts signed messages to a gateway; it implements verity.Sender.
type Sender struct {
	url     string
	safeURL string // url without credentials or query, for error causes
	secret  []byte
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
}

var _ verity.Sender = (*Sender)(nil)

// New validates cfg and returns a Sender; invalid settings are EINVALID errors.
func New(cfg Config) (*Sender, error) {
	const op = "webhook.New"
	invalid := func(msg string) error {
		return &verity.Error{Code: verity.EINVALID, Message: msg, Op: op}
	}

	// The URL may embed a gateway token, so no message below repeats it.
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalid("webhook url must be an absolute http or https url")
	}
	if len(cfg.Secret) < MinSecretLen {
		return nil, invalid(fmt.Sprintf("webhook secret must be at least %d bytes", MinSecretLen))
	}
	if cfg.Timeout < 0 {
		return nil, invalid("webhook timeout must not be negative")
	}

	s := &Sender{
		url:     u.String(),
		safeURL: (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
		secret:  bytes.Clone(cfg.Secret),
		timeout: cfg.Timeout,
		now:     cfg.Now,
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}

	// A copy, so the caller's client keeps its own redirect policy. Ours never
	// follows one: a redirect would carry the PIN to a URL nobody configured.
	c := http.Client{Transport: newTransport()}
	if cfg.Client != nil {
		c = *cfg.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	return s, nil
}

// idleConnsPerGateway is how many idle connections to the gateway are kept
// for the next messages. net/http's default keeps 2: under load, with more
// messages in flight than that, every other message dialled a new TCP (and
// TLS) connection and left one in TIME_WAIT.
const idleConnsPerGateway = 64

// newTransport is net/http's default transport (proxy from the environment,
// its timeouts, HTTP/2) keeping idleConnsPerGateway idle connections.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(t.MaxIdleConns, idleConnsPerGateway)
	t.MaxIdleConnsPerHost = idleConnsPerGateway
	return t
}

// payload is the JSON body; its field order is the documented one.
type payload struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	From      string `json:"from"`
	Text      string `json:"text"`
	ServiceID string `json:"service_id"`
	CreatedAt string `json:"created_at"`
}

// Send posts m to the gateway and returns nil only when it answers 2xx.
func (s *Sender) Send(ctx context.Context, m verity.Message) error {
	const op = "webhook.Send"

	body, err := json.Marshal(payload{
		ID:        m.ID,
		To:        m.To,
		From:      m.From,
		Text:      m.Text,
		ServiceID: m.ServiceID,
		CreatedAt: m.CreatedAt.UTC().Format(timeFormat),
	})
	if err != nil {
		// Unreachable for string fields; kept so a future field cannot panic.
		return &verity.Error{Code: verity.EINTERNAL, Message: "cannot encode message", Op: op}
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return &verity.Error{Code: verity.EUNAVAILABLE, Message: "sms gateway unavailable", Op: op, Err: s.redact(err)}
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "verity-webhook/1")
	req.Header.Set(TimestampHeader, ts)
	req.Header.Set(SignatureHeader, SignaturePrefix+Sign(s.secret, ts, body))
	// A key the gateway can drop duplicates by; it also lets net/http send
	// the request again on a keep-alive connection the gateway closed while
	// it was idle, which it does only for requests that are safe to repeat.
	req.Header.Set("Idempotency-Key", m.ID)

	// Once all of the request is written the gateway may act on it, answer
	// or not: a failure after that is not a refusal. net/http reports a
	// request written once it is in the connection's buffer, so a failure
	// writing to the socket still means the gateway cannot have it all.
	// Each attempt (GetConn) starts afresh.
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn:      func(string) { wrote.Store(false) },
		WroteRequest: func(info httptrace.WroteRequestInfo) { wrote.Store(info.Err == nil) },
	}))
	resp, err := s.client.Do(req)
	if err != nil {
		if wrote.Load() && !failedWriting(err) {
			return &verity.Error{Code: verity.EUNAVAILABLE, Op: op, Err: errors.Join(verity.ErrMaybeDelivered, s.redact(err)),
				Message: "sms gateway did not answer: the message may still arrive, and counts as sent"}
		}
		return &verity.Error{Code: verity.EUNAVAILABLE, Message: "sms gateway unavailable", Op: op, Err: s.redact(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
		// What a proxy in front of the gateway answers when the gateway
		// failed or was slow behind it: the gateway may have the message.
		return &verity.Error{Code: verity.EUPSTREAM, Op: op, Err: verity.ErrMaybeDelivered,
			Message: fmt.Sprintf("sms gateway answered %d: the message may still arrive, and counts as sent", resp.StatusCode)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &verity.Error{
			Code:    verity.EUPSTREAM,
			Message: fmt.Sprintf("sms gateway refused the message (status %d)", resp.StatusCode),
			Op:      op,
		}
	}
	return nil
}

// failedWriting tells whether err is a failure to write to the connection.
func failedWriting(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "write"
}

// redact replaces the URL in a transport error with one that has no
// credentials or query string, which may hold a gateway token; the request
// body never appears in these errors.
func (s *Sender) redact(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return &url.Error{Op: uerr.Op, URL: s.safeURL, Err: uerr.Err}
	}
	return err
}
