package main

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/verityhq/verity/totp"
)

// startUser is one user of the start scenario.
type startUser struct {
	id    string
	sends sendLog
}

// startScenario measures POST …/auth {"method":"sms"} with the discard
// sink. Every start goes to a user who got no PIN in the last 10.5 s (the
// resend interval) and fewer than 18 in the last minute; when the seeded
// users cannot carry the rate, prepare registers more (unmeasured).
type startScenario struct {
	api     *api
	conns   int
	bulk    *bool
	fresh   []string         // ids never started (no per-user state until used: -users may be millions)
	used    fifo[*startUser] // started, oldest start first
	created int              // users registered for this scenario beyond the seeded ones
}

func newStartScenario(a *api, uids []string, conns int, bulk *bool) *startScenario {
	return &startScenario{api: a, conns: conns, bulk: bulk, fresh: uids}
}

// available counts the users that may be started at now.
func (s *startScenario) available(now time.Time) int {
	n := len(s.fresh)
	for i := s.used.head; i < len(s.used.items); i++ {
		if !s.used.items[i].sends.canStart(now) {
			break // oldest first: the rest started later still
		}
		n++
	}
	return n
}

func (s *startScenario) prepare(ctx context.Context, want int) (targeter, error) {
	if missing := want - s.available(time.Now()); want > 0 && missing > 0 {
		ids, err := s.api.createUsers(ctx, "start-extra-", s.created, missing, s.conns, s.bulk)
		if err != nil {
			return nil, fmt.Errorf("register users for the start pool: %w", err)
		}
		s.fresh = append(s.fresh[:len(s.fresh):len(s.fresh)], ids...) // never append into the shared seeded slice
		s.created += missing
	}
	return func(_ int, t time.Time) (request, bool) {
		u, ok := s.used.peek()
		switch {
		case ok && u.sends.canStart(t):
			s.used.pop()
		case len(s.fresh) > 0:
			u, s.fresh = &startUser{id: s.fresh[0]}, s.fresh[1:]
		default:
			return request{}, false
		}
		u.sends.record(t)
		s.used.push(u)
		return request{method: "POST", path: s.api.userPath(u.id) + "/auth", body: startBody, want: 200, label: "start"}, true
	}, nil
}

func (s *startScenario) describe() string {
	return "POST …/auth {\"method\":\"sms\"} with --dev-sink discard, each user at most once per 10.5 s; " +
		"users are registered (unmeasured) when the seeded ones cannot carry the rate"
}

// totpUser is one user with an active authenticator app.
type totpUser struct {
	id          string
	seed        []byte
	lastStep    int64     // the newest step the server accepted (or will)
	wrong       int       // wrong codes sent in the current failure window
	windowStart time.Time // when that window began
}

// Failure budget the benchmark spends per user, inside failure_limit 100
// per failure_window_minutes 1 (benchSettings).
const (
	wrongPerWindow = 90
	failureWindow  = 62 * time.Second
)

// totpScenario measures PUT …/auth {"method":"totp","token":code}. Each
// request goes to the next user round-robin: the right code when the user
// has an unused step in the accepted window (one per 30 s step), otherwise
// a wrong code while the user's failure budget lasts.
type totpScenario struct {
	api      *api
	uids     []string // every seeded user: the pool grows into them when needed
	initial  int      // users enrolled before the first segment
	enrolled int      // users of uids enrolled so far
	conns    int
	bulk     *bool // whether the server has the bulk endpoint (see api.createUsers)
	created  int   // users registered for this scenario beyond the seeded ones
	params   totp.Params
	enrolFor time.Duration // spent enrolling, outside the measurement

	mu    sync.Mutex
	users []*totpUser
	next  int
}

// enrol gives users an active app: POST …/totp, then PUT …/totp with the
// current code, outside the measurement.
func (s *totpScenario) enrol(ctx context.Context, uids []string) error {
	users := make([]*totpUser, len(uids))
	err := parallelDo(ctx, len(uids), s.conns, func(i int) error {
		var e struct{ Secret string }
		path := s.api.userPath(uids[i]) + "/totp"
		if err := s.api.call(ctx, "POST", path, nil, &e, 200); err != nil {
			return err
		}
		seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(e.Secret))
		if err != nil {
			return fmt.Errorf("decode secret: %w", err)
		}
		step := totp.Step(time.Now(), s.params.Period)
		if err := s.api.call(ctx, "PUT", path, map[string]string{"token": totp.Code(seed, step, s.params)}, nil, 200); err != nil {
			return err
		}
		users[i] = &totpUser{id: uids[i], seed: seed, lastStep: step}
		return nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		if u != nil {
			s.users = append(s.users, u)
		}
	}
	return err
}

// capacity is how many requests the pool can take now without a refusal.
func (s *totpScenario) capacity(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, u := range s.users {
		if now.Sub(u.windowStart) > failureWindow {
			n += wrongPerWindow
		} else {
			n += wrongPerWindow - u.wrong
		}
	}
	return n
}

func (s *totpScenario) prepare(ctx context.Context, want int) (targeter, error) {
	grow := 0
	if s.enrolled == 0 {
		grow = min(s.initial, len(s.uids))
	} else if missing := want - s.capacity(time.Now()); want > 0 && missing > 0 {
		// The pool's failure budget cannot carry the rate: give more
		// users an app (each user can have only one), seeded ones first.
		grow = int(math.Ceil(float64(missing) / wrongPerWindow))
		if extra := s.enrolled + grow - len(s.uids); extra > 0 {
			// Every seeded user has an app already: register more.
			ids, err := s.api.createUsers(ctx, "totp-extra-", s.created, extra, s.conns, s.bulk)
			if err != nil {
				return nil, fmt.Errorf("register users for the authenticator pool: %w", err)
			}
			s.uids = append(s.uids[:len(s.uids):len(s.uids)], ids...) // never append into the shared seeded slice
			s.created += extra
		}
	}
	if grow > 0 {
		t0 := time.Now()
		err := s.enrol(ctx, s.uids[s.enrolled:s.enrolled+grow])
		s.enrolFor += time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("enrol authenticator apps: %w", err)
		}
		s.enrolled += grow
	}
	return s.nextRequest, nil
}

// nextRequest picks the next user round-robin that can take a request.
func (s *totpScenario) nextRequest(_ int, t time.Time) (request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	step := totp.Step(t, s.params.Period)
	for range len(s.users) {
		u := s.users[s.next]
		s.next = (s.next + 1) % len(s.users)
		r := request{method: "PUT", path: s.api.userPath(u.id) + "/auth", want: 200}
		// The server accepts steps step-1 … step+1 (totp_window 1) and only
		// after the last accepted one; it sees a later clock than t, never
		// an earlier one, so step and step+1 are safe.
		if cand := max(u.lastStep+1, step); cand <= step+1 {
			u.lastStep = cand
			r.body, r.expect, r.label = totpBody(totp.Code(u.seed, cand, s.params)), expectOK, "right"
			return r, true
		}
		if t.Sub(u.windowStart) > failureWindow {
			u.windowStart, u.wrong = t, 0
		}
		if u.wrong < wrongPerWindow {
			u.wrong++
			r.body, r.expect, r.label = totpBody(wrongCode(totp.Code(u.seed, step, s.params))), expectInvalid, "wrong"
			return r, true
		}
	}
	return request{}, false
}

// totpBody is the body of an authenticator-code check.
func totpBody(code string) []byte {
	return []byte(`{"method": "totp", "token": "` + code + `"}`)
}

func (s *totpScenario) describe() string {
	return fmt.Sprintf("PUT …/auth {\"method\":\"totp\",\"token\"} round-robin over %d users with an active app "+
		"(enrolled and confirmed before the clock runs; more are enrolled between segments, registering users once every seeded one has an app, if their failure budget runs short): the right code whenever the user has an unused step "+
		"(about one per user per 30 s), otherwise a wrong code (at most %d per user per minute)", s.enrolled, wrongPerWindow)
}

// createScenario measures user registration: one POST …/users per user,
// or POST …/users/bulk with perRequest users each.
type createScenario struct {
	api        *api
	perRequest int // 1: the single endpoint
	prefix     string
	n          int // users asked for so far
}

func (s *createScenario) prepare(context.Context, int) (targeter, error) {
	return func(int, time.Time) (request, bool) {
		from := s.n
		s.n += s.perRequest
		if s.perRequest == 1 {
			body, _ := json.Marshal(userBatch(s.prefix, from, 1)[0])
			return request{method: "POST", path: s.api.servicePath() + "/users", body: body, want: 200, label: "user"}, true
		}
		body, _ := json.Marshal(map[string]any{"users": userBatch(s.prefix, from, s.perRequest)})
		return request{method: "POST", path: s.api.servicePath() + "/users/bulk", body: body, want: 200, label: "bulk"}, true
	}, nil
}

func (s *createScenario) describe() string {
	if s.perRequest == 1 {
		return "POST …/users {\"id_in_service\",\"phone_number\"}, a new user each time (+37255xxxxxx numbers)"
	}
	return fmt.Sprintf("POST …/users/bulk with %d new users per request; users/s = ops/s × %d", s.perRequest, s.perRequest)
}

// usersPerOp is how many users one request of s registers.
func (s *createScenario) usersPerOp() float64 { return math.Max(1, float64(s.perRequest)) }
