package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/verityhq/verity"
)

type ctxKey int

const requestKey ctxKey = iota

// requestInfo is what the middleware keeps for one request: its id, the
// base logger, and the route pattern the mux matched (filled in by the
// route: the mux works on a copy of the request).
type requestInfo struct {
	log   *slog.Logger
	id    string
	route string
}

// loggerFrom returns the request's logger, which carries its request id.
// It is built only when something is logged: most requests log nothing
// below the access line, and slog's With pre-formats its attributes.
func loggerFrom(ctx context.Context) *slog.Logger {
	if info, ok := ctx.Value(requestKey).(*requestInfo); ok {
		return info.log.With("request_id", info.id)
	}
	return slog.Default()
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// withRequestLog gives each request an id (the caller's X-Request-Id when it
// is sane), a logger carrying it, and one access log line. The line holds
// the route pattern, never headers or bodies, so no credential or PIN can
// reach it.
func withRequestLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w}
		info := &requestInfo{log: log, id: id}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestKey, info)))
		if log.Enabled(r.Context(), slog.LevelInfo) {
			log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("request_id", id),
				slog.String("method", r.Method), slog.String("route", info.route), slog.Int("status", rec.status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
		}
	})
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// withRecover answers a panic with a JSON 500 instead of a dropped connection.
func withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				loggerFrom(r.Context()).Error("panic", "value", v)
				Error(w, r, &verity.Error{Code: verity.EINTERNAL, Op: "panic"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withCleanPath cleans the path (repeated slashes, dot segments) before
// routing. Left alone, ServeMux would answer such paths with a redirect and
// an HTML body, and a client whose base URL ends in "/" (the Java client
// then asks for //v1/…) would break on it.
func withCleanPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		if clean != r.URL.Path {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = clean, ""
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// withShortPaths accepts the path shape one page of Messente's documentation
// shows, /v1/service/{sid}/users/…, by rewriting it to the canonical
// /v1/service/service/{sid}/users/…. (Registering both shapes on one mux is
// ambiguous for a service id of "service", which no real id can be.)
func withShortPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const prefix = "/v1/service/"
		if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
			sid, tail, _ := strings.Cut(rest, "/")
			if sid != "service" && sid != "" && (strings.HasPrefix(tail, "users") || strings.HasPrefix(tail, "user/")) {
				r2 := r.Clone(r.Context())
				r2.URL.Path = prefix + "service/" + rest
				r2.URL.RawPath = ""
				r = r2
			}
		}
		next.ServeHTTP(w, r)
	})
}
