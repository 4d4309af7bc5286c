package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/httpapi"
	"github.com/verityhq/verity/secretbox"
	"github.com/verityhq/verity/sender/webhook"
	"github.com/verityhq/verity/sqlite"
)

// clockStart is where every fake clock begins: microseconds set and a
// non-UTC zone, so that the tests see ctime is rendered in UTC with
// microseconds whatever zone the clock reports.
var clockStart = time.Date(2024, 5, 1, 15, 0, 0, 123456000, time.FixedZone("EEST", 3*3600))

// startCTime is verity.FormatTime(clockStart), written out by hand.
const startCTime = "2024-05-01T12:00:00.123456"

var ctimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$`)

// fakeClock is the injected clock: time moves only when a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: clockStart} }

// Now returns the current fake time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sentMessage is one message as the SMS gateway received it.
type sentMessage struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	From      string `json:"from"`
	Text      string `json:"text"`
	ServiceID string `json:"service_id"`
	CreatedAt string `json:"created_at"`
}

var gatewaySecret = []byte("httpapi-test-gateway-secret")

// gateway stands in for an SMS gateway: an httptest.Server the real webhook
// sender posts to. It checks every signature and records what it accepted.
type gateway struct {
	srv   *httptest.Server
	clock *fakeClock

	mu       sync.Mutex
	status   int  // the answer to every request; 0 means 200
	hangUp   bool // take each message, then drop the connection unanswered
	accepted []sentMessage
	refused  int // requests answered with a non-2xx status
	problems []string
}

func newGateway(tb testing.TB, clock *fakeClock) *gateway {
	tb.Helper()
	g := &gateway{clock: clock}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serveHTTP))
	tb.Cleanup(func() {
		g.srv.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, p := range g.problems {
			tb.Errorf("gateway: %s", p)
		}
	})
	return g
}

func (g *gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := webhook.Verify(gatewaySecret, r.Header.Get(webhook.TimestampHeader),
		r.Header.Get(webhook.SignatureHeader), body, g.clock.Now(), 0); err != nil {
		g.problems = append(g.problems, fmt.Sprintf("bad signature: %v", err))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m sentMessage
	if err := json.Unmarshal(body, &m); err != nil {
		g.problems = append(g.problems, fmt.Sprintf("payload is not JSON: %v", err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if g.status != 0 && (g.status < 200 || g.status > 299) {
		g.refused++
		w.WriteHeader(g.status)
		return
	}
	g.accepted = append(g.accepted, m)
	if g.hangUp {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close() // the message is in; the answer never comes
		}
		return
	}
	w.WriteHeader(http.StatusOK)
}

// hangUpAfterTaking makes the gateway take every following message and
// close the connection without answering.
func (g *gateway) hangUpAfterTaking() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hangUp = true
}

// setStatus makes the gateway answer every following request with status.
func (g *gateway) setStatus(status int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.status = status
}

// messages returns a copy of the accepted messages, oldest first.
func (g *gateway) messages() []sentMessage {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]sentMessage(nil), g.accepted...)
}

// message returns the accepted message with that id (the start's auth_id).
func (g *gateway) message(tb testing.TB, id string) sentMessage {
	tb.Helper()
	for _, m := range g.messages() {
		if m.ID == id {
			return m
		}
	}
	tb.Fatalf("the gateway received no message with id %q", id)
	return sentMessage{}
}

// senderSwitch is the app's sender: it forwards to a real sender that a
// test can swap, to "fix" a broken gateway mid-test, and remembers every
// message it was handed, delivered or not.
type senderSwitch struct {
	mu       sync.Mutex
	s        verity.Sender
	attempts []verity.Message
}

// Send forwards m to the current sender.
func (s *senderSwitch) Send(ctx context.Context, m verity.Message) error {
	s.mu.Lock()
	cur := s.s
	s.attempts = append(s.attempts, m)
	s.mu.Unlock()
	return cur.Send(ctx, m)
}

// attempted returns every message the app tried to send, oldest first.
func (s *senderSwitch) attempted() []verity.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]verity.Message(nil), s.attempts...)
}

func (s *senderSwitch) set(v verity.Sender) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = v
}

// newWebhookSender returns the real webhook sender posting to url.
func newWebhookSender(tb testing.TB, url string, clock *fakeClock) *webhook.Sender {
	tb.Helper()
	s, err := webhook.New(webhook.Config{URL: url, Secret: gatewaySecret, Timeout: 5 * time.Second, Now: clock.Now})
	if err != nil {
		tb.Fatalf("webhook.New: %v", err)
	}
	return s
}

// env is one Verity server: real router, real SQLite store in a temporary
// folder, real keys, a fake clock and the real webhook sender posting to a
// recording gateway.
type env struct {
	tb      testing.TB
	app     *app.App
	db      *sqlite.DB
	handler http.Handler
	clock   *fakeClock
	gw      *gateway
	sender  *senderSwitch
	logs    *syncBuffer // everything the app and the server logged, as JSON lines
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEnv returns a fresh server on its own database.
func newEnv(tb testing.TB) *env { return newEnvWith(tb, nil) }

// newEnvWith is newEnv with the store wrapped by wrap (nil: the plain store).
func newEnvWith(tb testing.TB, wrap func(*sqlite.DB) verity.Store) *env {
	tb.Helper()
	return newEnvOn(tb, mustOpenDB(tb, filepath.Join(tb.TempDir(), "verity.db")), wrap)
}

// newEnvOn is newEnvWith on an open database.
func newEnvOn(tb testing.TB, db *sqlite.DB, wrap func(*sqlite.DB) verity.Store) *env {
	tb.Helper()
	var store verity.Store = db
	if wrap != nil {
		store = wrap(db)
	}
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		tb.Fatal(err)
	}
	keys, err := app.NewKeys(master)
	if err != nil {
		tb.Fatalf("NewKeys: %v", err)
	}
	clock := newFakeClock()
	gw := newGateway(tb, clock)
	sw := &senderSwitch{s: newWebhookSender(tb, gw.srv.URL+"/sms", clock)}
	logs := &syncBuffer{}
	log := slog.New(httpapi.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// Wall-clock nanoseconds could spell a PIN by chance; the log test must not flake.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	a := app.New(store, sw, keys, log)
	a.Now = clock.Now
	seeds, err := secretbox.OpenFileKeyring(filepath.Join(tb.TempDir(), "seed-keys.json"), true)
	if err != nil {
		tb.Fatalf("OpenFileKeyring: %v", err)
	}
	a.Seeds = seeds
	return &env{tb: tb, app: a, db: db, handler: httpapi.NewServer(a, log).Handler(), clock: clock, gw: gw, sender: sw, logs: logs}
}

// mustOpenDB opens and migrates a SQLite store at path, closed at cleanup.
func mustOpenDB(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(path)
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	return db
}

// account creates an API account and returns its X-Service-Auth value.
func (e *env) account(name string) string {
	e.tb.Helper()
	acct, password, err := e.app.CreateAccount(context.Background(), name)
	if err != nil {
		e.tb.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return acct.Username + ":" + password
}

// response is one recorded answer. Body is the decoded JSON object.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Raw)) }

// do sends one request through the router. body may be nil (no body), a
// string or []byte (sent as is) or anything else (sent as JSON). Every
// answer must be a JSON object and every error must carry a string
// "message" and "code"; do reports violations with Errorf, so it is safe to
// call from any goroutine.
func (e *env) do(auth, method, path string, body any) response {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.tb.Errorf("marshal request body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("X-Service-Auth", auth)
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return checkResponse(e.tb, method+" "+path, rec.Code, rec.Header(), rec.Body.Bytes())
}

// checkResponse decodes raw and enforces the shape every Verigator client
// relies on.
func checkResponse(tb testing.TB, what string, status int, h http.Header, raw []byte) response {
	r := response{Status: status, Header: h, Raw: raw}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("%s: Content-Type = %q, want application/json", what, ct)
	}
	if err := json.Unmarshal(raw, &r.Body); err != nil || r.Body == nil {
		tb.Errorf("%s: answered %d with a body that is not a JSON object: %q", what, status, raw)
		return r
	}
	if status >= 400 {
		if m, ok := r.Body["message"].(string); !ok || m == "" {
			tb.Errorf("%s: error %d has no string message: %s", what, status, raw)
		}
		if c, ok := r.Body["code"].(string); !ok || c == "" {
			tb.Errorf("%s: error %d has no string code: %s", what, status, raw)
		}
	}
	return r
}

// wantStatus fails the test unless r has status.
func wantStatus(tb testing.TB, r response, status int) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status = %d, want %d; body %s", r.Status, status, bytes.TrimSpace(r.Raw))
	}
}

// wantError fails the test unless r is an error with status and code.
func wantError(tb testing.TB, r response, status int, code string) {
	tb.Helper()
	wantStatus(tb, r, status)
	if got := r.Body["code"]; got != code {
		tb.Fatalf("code = %v, want %q; body %s", got, code, bytes.TrimSpace(r.Raw))
	}
}

// matcher checks one value of a JSON body whose exact value a test cannot know.
type matcher func(v any) error

var nonEmptyString matcher = func(v any) error {
	if s, ok := v.(string); !ok || s == "" {
		return fmt.Errorf("want a non-empty string, got %#v", v)
	}
	return nil
}

var ctimeValue matcher = func(v any) error {
	if s, ok := v.(string); !ok || !ctimeRE.MatchString(s) {
		return fmt.Errorf("want a ctime like 2017-09-15T06:44:15.274438, got %#v", v)
	}
	return nil
}

// wantBody fails the test unless got has exactly want's keys and each value
// equals (or, for a matcher, satisfies) want's.
func wantBody(tb testing.TB, got map[string]any, want map[string]any) {
	tb.Helper()
	if g, w := sortedKeys(got), sortedKeys(want); !reflect.DeepEqual(g, w) {
		tb.Fatalf("body keys = %v, want %v; body %v", g, w, got)
	}
	for k, w := range want {
		if m, ok := w.(matcher); ok {
			if err := m(got[k]); err != nil {
				tb.Fatalf("body[%q]: %v", k, err)
			}
			continue
		}
		if !reflect.DeepEqual(got[k], w) {
			tb.Fatalf("body[%q] = %#v, want %#v; body %v", k, got[k], w, got)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Paths of the Verigator v1 API.
func servicePath(sid string) string { return "/v1/service/service/" + sid }
func usersPath(sid string) string   { return servicePath(sid) + "/users" }
func userPath(sid, uid string) string {
	return usersPath(sid) + "/" + uid
}
func authPath(sid, uid string) string { return userPath(sid, uid) + "/auth" }

// service creates a service and returns its id.
func (e *env) service(auth, name string) string {
	e.tb.Helper()
	r := e.do(auth, "POST", "/v1/service/service", map[string]string{"fqdn": "www.example.com", "name": name})
	wantStatus(e.tb, r, http.StatusOK)
	return r.Body["id"].(string)
}

// user registers a user and returns its id.
func (e *env) user(auth, sid, idInService, phone string) string {
	e.tb.Helper()
	r := e.do(auth, "POST", usersPath(sid), map[string]string{"id_in_service": idInService, "phone_number": phone})
	wantStatus(e.tb, r, http.StatusOK)
	return r.Body["id"].(string)
}

// serviceUser makes an account, a service "Acme" and one user, and returns
// the credentials and ids.
func (e *env) serviceUser() (auth, sid, uid string) {
	e.tb.Helper()
	auth = e.account("acme")
	sid = e.service(auth, "Acme")
	uid = e.user(auth, sid, "alice@example.com", "+3725555555")
	return auth, sid, uid
}

// startSMS starts an SMS verification, requires 200 and returns the auth_id
// and the PIN the gateway received.
func (e *env) startSMS(auth, sid, uid string) (authID, pin string) {
	e.tb.Helper()
	r := e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"})
	wantStatus(e.tb, r, http.StatusOK)
	authID, _ = r.Body["auth_id"].(string)
	if authID == "" {
		e.tb.Fatalf("start: no auth_id in %s", r.Raw)
	}
	return authID, pinOf(e.tb, e.gw.message(e.tb, authID).Text)
}

// check sends a check of token.
func (e *env) check(auth, sid, uid, token string) response {
	return e.do(auth, "PUT", authPath(sid, uid), map[string]string{"token": token})
}

var pinRE = regexp.MustCompile(`code is (\d+)$`)

// pinOf extracts the PIN from a message rendered from the default template.
func pinOf(tb testing.TB, text string) string {
	tb.Helper()
	m := pinRE.FindStringSubmatch(text)
	if m == nil {
		tb.Fatalf("no PIN in message text %q", text)
	}
	return m[1]
}

// wrongPIN returns a code of pin's length that differs from pin in every
// digit; i picks one of nine such codes.
func wrongPIN(pin string, i int) string {
	b := []byte(pin)
	shift := byte(1 + i%9)
	for k, c := range b {
		b[k] = '0' + (c-'0'+shift)%10
	}
	return string(b)
}

// checkBody is the exact body of a check answer.
func checkBody(verified bool, result string) map[string]any {
	return map[string]any{
		"method":   "sms",
		"verified": verified,
		"status": map[string]any{
			"throttled": result == "THROTTLED",
			"expired":   result == "EXPIRED",
			"invalid":   result == "INVALID",
			"result":    result,
		},
	}
}

// wantCheck fails the test unless r is a 200 check answer with that outcome.
func wantCheck(tb testing.TB, r response, verified bool, result string) {
	tb.Helper()
	wantStatus(tb, r, http.StatusOK)
	wantBody(tb, r.Body, checkBody(verified, result))
}
