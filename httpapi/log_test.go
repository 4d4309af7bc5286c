package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/httpapi"
	"github.com/verityhq/verity/sqlite"
)

// TestLogsHoldNoSecrets runs every kind of request, successes and failures,
// and then searches everything the app and the server logged for the
// secrets security invariant 2 names.
func TestLogsHoldNoSecrets(t *testing.T) {
	e := newEnv(t)
	auth, sid, uid := e.serviceUser()
	password := strings.TrimPrefix(auth, "acme:")
	secrets := map[string]string{
		"API password":         password,
		"full phone number":    "3725555555",
		"X-Service-Auth value": auth,
	}

	_, pin := e.startSMS(auth, sid, uid)
	secrets["PIN"] = pin
	wrong := wrongPIN(pin, 0)
	secrets["wrong token"] = wrong
	wantCheck(t, e.check(auth, sid, uid, wrong), false, "INVALID")
	wantCheck(t, e.check(auth, sid, uid, pin), true, "VERIFIED")
	wantStatus(t, e.do(auth+"x", "GET", servicePath(sid), nil), http.StatusUnauthorized)
	secrets["wrong password"] = password + "x"
	wantStatus(t, e.do(auth, "PATCH", settingsPath(sid), `{"message_template": "<PIN> for {service}"}`), http.StatusOK)

	// Failed deliveries log at warning and error level: the PINs of those
	// attempts, which no one received, must not show either.
	e.clock.Advance(31 * time.Second)
	e.gw.setStatus(http.StatusInternalServerError)
	wantStatus(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusBadGateway)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	e.sender.set(newWebhookSender(t, closed.URL+"/sms", e.clock))
	wantStatus(t, e.do(auth, "POST", authPath(sid, uid), map[string]string{"method": "sms"}), http.StatusServiceUnavailable)

	attempts := e.sender.attempted()
	if len(attempts) != 3 {
		t.Fatalf("the app attempted %d sends, want 3", len(attempts))
	}
	for i, m := range attempts[1:] {
		secrets[fmt.Sprintf("PIN of failed send %d", i+1)] = regexp.MustCompile(`^\d+`).FindString(m.Text)
	}

	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, "sms delivery failed") {
		t.Fatalf("the logs lack the request and delivery-failure lines this test expects to search:\n%s", logs)
	}
	for what, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s %q appears in the logs:\n%s", what, secret, logs)
		}
	}
}

// TestLogLinesCarryTheRequest: a request's access line names its id, route
// pattern, status and client address, and a failure logged while it ran,
// by the error sink or by the app, carries the same id, so the lines can be
// joined. The middleware keeps these in the ResponseWriter the handlers
// get, and the app finds the id through the request's context.
func TestLogLinesCarryTheRequest(t *testing.T) {
	e := newEnv(t)
	auth, sid, uid := e.serviceUser()
	e.clock.Advance(31 * time.Second)
	e.gw.setStatus(http.StatusInternalServerError) // the SMS gateway fails: 502, logged as an error

	req := httptest.NewRequest("POST", authPath(sid, uid), strings.NewReader(`{"method": "sms"}`))
	req.Header.Set("X-Service-Auth", auth)
	req.Header.Set("X-Request-Id", "trace-me-42")
	req.Header.Set("X-Forwarded-For", "203.0.113.9") // anyone can send it: not the client's address
	req.RemoteAddr = "198.51.100.7:40123"
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("start with a failing gateway = %d %s, want 502", rec.Code, rec.Body)
	}

	var failure, delivery, access map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch m["msg"] {
		case "request failed":
			failure = m
		case "sms delivery failed": // the app's line
			delivery = m
		case "request":
			if m["request_id"] == "trace-me-42" {
				access = m
			}
		}
	}
	if failure == nil || failure["request_id"] != "trace-me-42" || failure["status"] != float64(http.StatusBadGateway) {
		t.Errorf("the failure's log line = %v, want request_id trace-me-42 and status 502", failure)
	}
	if delivery == nil || delivery["request_id"] != "trace-me-42" {
		t.Errorf("the app's delivery failure line = %v, want request_id trace-me-42", delivery)
	}
	wantRoute := "POST /v1/service/service/{sid}/users/{uid}/auth"
	if access == nil || access["route"] != wantRoute || access["status"] != float64(http.StatusBadGateway) || access["method"] != "POST" {
		t.Errorf("the access line = %v, want route %q, method POST and status 502", access, wantRoute)
	}
	if access == nil || access["remote_addr"] != req.RemoteAddr {
		t.Errorf("the access line = %v, want remote_addr %q (the connection's, not X-Forwarded-For)", access, req.RemoteAddr)
	}
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		if strings.Count(line, `"request_id"`) > 1 {
			t.Errorf("a log line names its request id twice: %s", line)
		}
	}
}

// panickingStore panics where the readiness check pings the database.
type panickingStore struct{ verity.Store }

func (panickingStore) Ping(context.Context) error { panic("injected panic in Ping") }

// TestPanicsAreLoggedWithTheirStack: a panic in a handler is answered with
// the JSON 500 every other internal error gets, and logged with the
// request's id and the stack that led to it, which names the function that
// panicked.
func TestPanicsAreLoggedWithTheirStack(t *testing.T) {
	e := newEnvWith(t, func(db *sqlite.DB) verity.Store { return panickingStore{db} })
	req := httptest.NewRequest("GET", "/readyz", nil)
	req.Header.Set("X-Request-Id", "panic-7")
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	var body map[string]any
	if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body["message"] != "internal error" {
		t.Fatalf("a panicking request = %d %s, want a JSON 500 with message \"internal error\"", rec.Code, rec.Body)
	}

	var panicked map[string]any
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "panic" {
			panicked = m
		}
	}
	if panicked == nil || panicked["request_id"] != "panic-7" || panicked["value"] != "injected panic in Ping" {
		t.Fatalf("the panic's log line = %v, want request_id panic-7 and the panic's value", panicked)
	}
	stack, _ := panicked["stack"].(string)
	if !strings.Contains(stack, "goroutine ") || !strings.Contains(stack, "panickingStore.Ping") {
		t.Fatalf("the panic's stack = %q, want a goroutine trace through panickingStore.Ping", stack)
	}
}

// TestDebugLevelLogsTheOutcome: at debug level a request's access line
// also says what the app decided (a start's method, a check's result, a
// failure's code) and, for a failure, the message the caller got; at info
// level the line is as before.
func TestDebugLevelLogsTheOutcome(t *testing.T) {
	e := newEnv(t) // logs at debug level
	auth, sid, uid := e.serviceUser()
	_, pin := e.startSMS(auth, sid, uid)
	wantCheck(t, e.check(auth, sid, uid, wrongPIN(pin, 0)), false, "INVALID")
	wantStatus(t, e.do(auth, "POST", usersPath(sid), map[string]any{"id_in_service": "b", "phone_number": "5555555"}),
		http.StatusUnprocessableEntity)

	accessLines := func(logs string) []map[string]any {
		var lines []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if m["msg"] == "request" {
				lines = append(lines, m)
			}
		}
		return lines
	}
	lines := accessLines(e.logs.String())
	if len(lines) < 3 {
		t.Fatalf("%d access lines, want at least 3:\n%s", len(lines), e.logs.String())
	}
	last := lines[len(lines)-3:]
	for i, want := range []struct{ outcome, message string }{
		{"sms", ""},
		{"INVALID", ""},
		{verity.EINVALID, "phone_number must be in international format, starting with + and the country code"},
	} {
		if last[i]["outcome"] != want.outcome {
			t.Errorf("access line %v: outcome = %v, want %q", last[i], last[i]["outcome"], want.outcome)
		}
		if got, _ := last[i]["error"].(string); got != want.message {
			t.Errorf("access line %v: error = %q, want %q", last[i], got, want.message)
		}
	}

	infoLogs := &syncBuffer{}
	info := httpapi.NewServer(e.app, slog.New(slog.NewJSONHandler(infoLogs, nil))).Handler()
	req := httptest.NewRequest("PUT", authPath(sid, uid), strings.NewReader(`{"token": "`+wrongPIN(pin, 1)+`"}`))
	req.Header.Set("X-Service-Auth", auth)
	info.ServeHTTP(httptest.NewRecorder(), req)
	lines = accessLines(infoLogs.String())
	if len(lines) != 1 || lines[0]["outcome"] != nil || lines[0]["error"] != nil || lines[0]["route"] == nil {
		t.Errorf("at info level the access lines = %v, want one, without outcome or error", lines)
	}
}
