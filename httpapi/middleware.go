package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/verityhq/verity"
)

// requestLog is what the middleware keeps for one request, in the
// ResponseWriter every handler is given: its id, the base logger, the route
// pattern the mux matched (filled in by the route), and the status written,
// for the access line. It also holds what would otherwise each cost an
// allocation per request: the request's context as handlers see it, the
// X-Request-Id header's value, and the access line's attributes past the
// five a slog.Record holds inline.
type requestLog struct {
	http.ResponseWriter
	ctx      requestContext
	log      *slog.Logger
	id       string
	idHeader [1]string
	tail     [4]slog.Attr
	route    string
	status   int
	// outcome and message are what the app decided (a check's result, the
	// method a start used, an error's code and the message its caller got),
	// for the access line at debug level. Both are strings that exist
	// anyway: noting them costs nothing.
	outcome, message string
}

// noteOutcome records what the app decided about the request.
func noteOutcome(w http.ResponseWriter, outcome, message string) {
	if rl := requestLogOf(w); rl != nil {
		rl.outcome, rl.message = outcome, message
	}
}

// requestContext is the request's own context, through which the app's log
// lines find the request they belong to (LogHandler). It lives inside the
// requestLog; the request copy that carries it costs the allocation the
// X-Request-Id header's value no longer does.
type requestContext struct {
	context.Context
	rl *requestLog
}

// requestLogKey finds a request's requestLog in its context.
type requestLogKey struct{}

// Value answers requestLogKey with the request's requestLog and anything
// else as the request's own context does (which also keeps contexts derived
// from it, with WithTimeout say, on the parent's cancellation without a
// goroutine of their own).
func (c *requestContext) Value(key any) any {
	if key == (requestLogKey{}) {
		return c.rl
	}
	return c.Context.Value(key)
}

// LogHandler returns h adding "request_id" to every record logged with the
// context of a request the API serves: the app logs with it (a failed
// delivery, a PIN sent), and those lines must join the request's access
// line. Give the app a logger with it.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rl, ok := ctx.Value(requestLogKey{}).(*requestLog); ok {
		rec = rec.Clone() // the caller's record may share its attributes' storage
		rec.AddAttrs(slog.String("request_id", rl.id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// requestLogOf returns the request's requestLog, if w is (or wraps) one.
func requestLogOf(w http.ResponseWriter) *requestLog {
	for {
		switch rw := w.(type) {
		case *requestLog:
			return rw
		case interface{ Unwrap() http.ResponseWriter }:
			w = rw.Unwrap()
		default:
			return nil
		}
	}
}

// loggerFor returns the request's logger, which carries its request id.
// It is built only when something is logged: most requests log nothing
// below the access line, and slog's With pre-formats its attributes.
func loggerFor(w http.ResponseWriter) *slog.Logger {
	if rl := requestLogOf(w); rl != nil {
		return rl.log.With("request_id", rl.id)
	}
	return slog.Default()
}

func (rl *requestLog) WriteHeader(code int) {
	if rl.status == 0 {
		rl.status = code
	}
	rl.ResponseWriter.WriteHeader(code)
}

func (rl *requestLog) Write(b []byte) (int, error) {
	if rl.status == 0 {
		rl.status = http.StatusOK
	}
	return rl.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rl *requestLog) Unwrap() http.ResponseWriter { return rl.ResponseWriter }

// withRequestLog gives each request an id (the caller's X-Request-Id when it
// is sane), a logger and a context carrying it, and one access log line. The
// line holds the route pattern and the client's address (the connection's
// peer: X-Forwarded-For is anyone's to write), never headers or bodies, so
// no credential or PIN can reach it. At debug level it also holds the app's
// outcome and, for a failure, the message the caller got: why a request was
// answered as it was, without a second line.
func withRequestLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !saneRequestID(id) {
			id = newRequestID()
		}
		rl := &requestLog{ResponseWriter: w, log: log, id: id}
		rl.ctx = requestContext{Context: r.Context(), rl: rl}
		rl.idHeader[0] = id
		w.Header()["X-Request-Id"] = rl.idHeader[:] // canonical already: Set would check it again
		next.ServeHTTP(rl, r.WithContext(&rl.ctx))
		if log.Enabled(r.Context(), slog.LevelInfo) {
			// The last attributes ride in a group without a key, which
			// handlers write inline: its storage is rl's, where a sixth
			// attribute of the record's own would take an allocation.
			rl.tail[0] = slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000)
			rl.tail[1] = slog.String("remote_addr", r.RemoteAddr)
			n := 2
			if rl.outcome != "" && log.Enabled(r.Context(), slog.LevelDebug) {
				rl.tail[n] = slog.String("outcome", rl.outcome)
				n++
				if rl.message != "" {
					rl.tail[n] = slog.String("error", rl.message)
					n++
				}
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("request_id", id),
				slog.String("method", r.Method), slog.String("route", rl.route), slog.Int("status", rl.status),
				slog.Attr{Value: slog.GroupValue(rl.tail[:n]...)})
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
	var b [12]byte
	var text [24]byte
	rand.Read(b[:])
	hex.Encode(text[:], b[:])
	return string(text[:])
}

// withRecover answers a panic with a JSON 500 instead of a dropped
// connection, and logs it with the stack that led to it: the value alone
// seldom says where the bug is.
func withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				loggerFor(w).Error("panic", "value", v, "stack", string(debug.Stack()))
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
