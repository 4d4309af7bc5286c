package logsender_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	logsender "github.com/verityhq/verity/sender/log"
)

func TestHandler(t *testing.T) {
	t.Run("serves the messages newest first as json", func(t *testing.T) {
		s := logsender.New(nil, 0)
		MustSend(t, s, message(1))
		MustSend(t, s, message(2))

		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/dev/messages", nil))

		if got, want := w.Code, http.StatusOK; got != want {
			t.Fatalf("status = %d, want %d", got, want)
		}
		if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
			t.Fatalf("Content-Type = %q, want %q", got, want)
		}
		if got, want := w.Header().Get("Cache-Control"), "no-store"; got != want {
			t.Fatalf("Cache-Control = %q, want %q", got, want)
		}
		var body struct {
			Messages []map[string]any `json:"messages"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("body is not json: %v", err)
		}
		if got, want := len(body.Messages), 2; got != want {
			t.Fatalf("len(messages) = %d, want %d", got, want)
		}
		want := map[string]any{
			"id":         "msg-2",
			"to":         "+37255512345",
			"from":       "Verity",
			"text":       "Your PIN is 000002",
			"service_id": "svc-1",
			"created_at": "2024-05-01T11:30:17.123456Z",
		}
		first := body.Messages[0]
		if len(first) != len(want) {
			t.Fatalf("message has %d fields, want %d: %v", len(first), len(want), first)
		}
		for k, v := range want {
			if got := first[k]; got != v {
				t.Fatalf("messages[0][%q] = %v, want %v", k, got, v)
			}
		}
		if _, err := time.Parse(time.RFC3339, first["created_at"].(string)); err != nil {
			t.Fatalf("created_at is not RFC 3339: %v", err)
		}
		if got, want := body.Messages[1]["id"], "msg-1"; got != want {
			t.Fatalf("messages[1].id = %v, want %v", got, want)
		}
	})

	t.Run("serves an empty list, not null", func(t *testing.T) {
		w := httptest.NewRecorder()
		logsender.New(nil, 0).Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if got, want := w.Body.String(), "{\"messages\":[]}\n"; got != want {
			t.Fatalf("body = %q, want %q", got, want)
		}
	})

	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		t.Run(method+" is not allowed", func(t *testing.T) {
			w := httptest.NewRecorder()
			logsender.New(nil, 0).Handler().ServeHTTP(w, httptest.NewRequest(method, "/", nil))
			if got, want := w.Code, http.StatusMethodNotAllowed; got != want {
				t.Fatalf("status = %d, want %d", got, want)
			}
			if got, want := w.Header().Get("Content-Type"), "application/json"; got != want {
				t.Fatalf("Content-Type = %q, want %q", got, want)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not json: %v", err)
			}
			if got, want := body["message"], "method not allowed"; got != want {
				t.Fatalf("message = %q, want %q", got, want)
			}
		})
	}
}
