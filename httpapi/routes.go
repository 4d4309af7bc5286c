// Package httpapi serves Verity over HTTP: the Verigator v1 wire protocol
// (../shared/docs/verigator-v1-contract.md) and Verity's extensions.
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
)

// Server holds what the handlers need.
type Server struct {
	app *app.App
	log *slog.Logger
	// DevMessages, when set, is served at GET /dev/messages (development mode only).
	DevMessages http.Handler
}

// NewServer returns the API server for a.
func NewServer(a *app.App, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{app: a, log: log}
}

// Handler returns the whole API as one handler, middleware included.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	routeLimit := func(pattern string, maxBody int64, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if rl := requestLogOf(w); rl != nil {
				rl.route = r.Pattern
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			h(w, r)
		})
	}
	route := func(pattern string, h http.HandlerFunc) { routeLimit(pattern, maxBodyBytes, h) }
	authedLimit := func(pattern string, maxBody int64, h func(http.ResponseWriter, *http.Request, *verity.Account)) {
		routeLimit(pattern, maxBody, func(w http.ResponseWriter, r *http.Request) {
			acct, err := s.app.Authenticate(r.Context(), r.Header.Get("X-Service-Auth"))
			if err != nil {
				Error(w, r, err)
				return
			}
			h(w, r, acct)
		})
	}
	authed := func(pattern string, h func(http.ResponseWriter, *http.Request, *verity.Account)) {
		authedLimit(pattern, maxBodyBytes, h)
	}

	route("GET /healthz", s.healthz)
	route("GET /readyz", s.readyz)
	if s.DevMessages != nil {
		route("GET /dev/messages", s.DevMessages.ServeHTTP)
	}

	const svc = "/v1/service/service"
	authed("POST "+svc, s.createService)
	authed("GET "+svc+"/{sid}", s.getService)
	authed("DELETE "+svc+"/{sid}", s.deleteService)
	authed("GET "+svc+"/{sid}/settings", s.getSettings)
	authed("PATCH "+svc+"/{sid}/settings", s.patchSettings)

	authed("POST "+svc+"/{sid}/users", s.createUser)
	authed("GET "+svc+"/{sid}/users", s.listUsers)
	authedLimit("POST "+svc+"/{sid}/users/bulk", maxBulkBodyBytes, s.createUsers)
	// The Java client reads one user at the singular /user/ path: serve both shapes.
	for _, users := range []string{"/users/", "/user/"} {
		authed("GET "+svc+"/{sid}"+users+"{uid}", s.getUser)
		authed("DELETE "+svc+"/{sid}"+users+"{uid}", s.deleteUser)
		authed("POST "+svc+"/{sid}"+users+"{uid}/auth", s.startAuth)
		authed("PUT "+svc+"/{sid}"+users+"{uid}/auth", s.checkAuth)
		authed("POST "+svc+"/{sid}"+users+"{uid}/totp", s.enrolTOTP)
		authed("PUT "+svc+"/{sid}"+users+"{uid}/totp", s.confirmTOTP)
		authed("GET "+svc+"/{sid}"+users+"{uid}/totp", s.getTOTP)
		authed("DELETE "+svc+"/{sid}"+users+"{uid}/totp", s.deleteTOTP)
		authed("GET "+svc+"/{sid}"+users+"{uid}/totp/qr.png", s.totpQR)
	}

	// Everything else answers JSON too: Verigator clients parse every body.
	route("/", func(w http.ResponseWriter, r *http.Request) {
		Error(w, r, verity.Errorf(verity.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})

	var h http.Handler = mux
	h = withShortPaths(h)
	h = withCleanPath(h)
	h = withRecover(h)
	h = withRequestLog(s.log, h)
	return h
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.app.Ready(r.Context()); err != nil {
		Error(w, r, &verity.Error{Code: verity.EUNAVAILABLE, Message: "database unreachable", Err: err})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
