package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
)

// api makes the benchmark's unmeasured setup calls (services, settings,
// users, PINs, enrolments) against one server.
type api struct {
	tg  *target
	sid string
}

// call sends a JSON request and decodes a JSON answer into out when the
// status is want.
func (a *api) call(ctx context.Context, method, path string, in, out any, want int) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	status, resp, err := a.tg.do(ctx, request{method: method, path: path, body: body})
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return &statusError{method: method, path: path, status: status, body: string(resp)}
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// statusError is an answer with an unexpected status.
type statusError struct {
	method, path string
	status       int
	body         string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s = %d %s", e.method, e.path, e.status, e.body)
}

// servicePath is the Verigator path of the benchmark's service.
func (a *api) servicePath() string { return "/v1/service/service/" + a.sid }

// userPath is the path of one user of the service.
func (a *api) userPath(uid string) string { return a.servicePath() + "/users/" + uid }

// benchSettings lets one user verify many times a minute, so that a pool
// of a few thousand users can carry a measurement: PINs stay valid 30 min,
// 10 wrong tries per PIN and 100 per user per minute, 20 sends per user
// per minute at least 10 s apart unless the previous PIN was verified.
var benchSettings = map[string]any{
	"pin_validity_minutes":    30,
	"max_attempts":            10,
	"failure_limit":           100,
	"failure_window_minutes":  1,
	"max_sends":               20,
	"send_window_minutes":     1,
	"resend_interval_seconds": 10,
}

// setupService creates the benchmark's service and applies benchSettings.
func (a *api) setupService(ctx context.Context) error {
	var svc struct{ ID string }
	if err := a.call(ctx, "POST", "/v1/service/service", map[string]string{"name": "Bench", "fqdn": "bench.example.com"}, &svc, 200); err != nil {
		return err
	}
	a.sid = svc.ID
	return a.call(ctx, "PATCH", a.servicePath()+"/settings", benchSettings, nil, 200)
}

// phoneNumber returns a distinct-looking Estonian mobile number for user i.
func phoneNumber(i int) string { return fmt.Sprintf("+37255%06d", i%1_000_000) }

// newUser is one entry of a user creation body.
type newUser struct {
	IDInService string `json:"id_in_service"`
	PhoneNumber string `json:"phone_number"`
}

// userBatch returns users prefix<from> … prefix<from+n-1>.
func userBatch(prefix string, from, n int) []newUser {
	users := make([]newUser, n)
	for i := range users {
		users[i] = newUser{IDInService: fmt.Sprintf("%s%d", prefix, from+i), PhoneNumber: phoneNumber(from + i)}
	}
	return users
}

// bulkSize is the most users one bulk request may carry.
const bulkSize = 1000

// createUsers registers n users named prefix<from>… and returns their ids
// in a spread order (spreadOrder). It uses the bulk endpoint while it
// exists (a.bulk is nil until the first call finds out) and one POST per
// user with conns workers otherwise.
func (a *api) createUsers(ctx context.Context, prefix string, from, n, conns int, bulk *bool) ([]string, error) {
	ids, err := a.registerUsers(ctx, prefix, from, n, conns, bulk)
	if err == nil {
		spreadOrder(ids, uint64(from))
	}
	return ids, err
}

// spreadOrder shuffles ids, the same way every run for the same seed.
// Scenarios take their users from the front of what createUsers returns,
// so users come to them spread over all those registered, as a service's
// active users are spread over all its users. In the order they were
// registered, with ids that grow with time (UUIDv7), consecutive users
// would share index and table pages: measured with the users a start
// scenario registers beyond 1000 seeded ones (about 200,000 at 19,000
// starts/s), in order 18,783 and 19,942 starts/s at 64-69 µs of server
// CPU each, shuffled 15,063 and 16,076 at 80-83 µs, which is what a
// million shuffled seeded users cost.
func spreadOrder(ids []string, seed uint64) {
	rand.New(rand.NewPCG(1, 2+seed)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
}

// registerUsers registers n users named prefix<from>… and returns their ids
// in the order of their names.
func (a *api) registerUsers(ctx context.Context, prefix string, from, n, conns int, bulk *bool) ([]string, error) {
	ids := make([]string, n)
	if *bulk && n > 0 {
		err := a.createBulk(ctx, prefix, from, n, ids)
		var se *statusError
		if errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusMethodNotAllowed) {
			*bulk = false // the server has no bulk endpoint: fall back
		} else {
			return ids, err
		}
	}
	return ids, parallelDo(ctx, n, conns, func(i int) error {
		var u struct{ ID string }
		err := a.call(ctx, "POST", a.servicePath()+"/users", userBatch(prefix, from+i, 1)[0], &u, 200)
		ids[i] = u.ID
		return err
	})
}

// createBulk registers users through POST …/users/bulk, a few requests at a time.
func (a *api) createBulk(ctx context.Context, prefix string, from, n int, ids []string) error {
	chunks := (n + bulkSize - 1) / bulkSize
	return parallelDo(ctx, chunks, 4, func(c int) error {
		lo := c * bulkSize
		hi := min(lo+bulkSize, n)
		var out struct {
			Users []struct{ ID string }
		}
		err := a.call(ctx, "POST", a.servicePath()+"/users/bulk", map[string]any{"users": userBatch(prefix, from+lo, hi-lo)}, &out, 200)
		if err != nil {
			return err
		}
		if len(out.Users) != hi-lo {
			return fmt.Errorf("bulk create answered %d users for %d", len(out.Users), hi-lo)
		}
		for i, u := range out.Users {
			ids[lo+i] = u.ID
		}
		return nil
	})
}

// parallelDo runs fn(0) alone, then fn(1…n-1) on up to conns workers, and
// returns the first error. Running the first call alone lets callers learn
// from it (e.g. that an endpoint is missing) before fanning out.
func parallelDo(ctx context.Context, n, conns int, fn func(i int) error) error {
	if n == 0 {
		return nil
	}
	if err := fn(0); err != nil {
		return err
	}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
		failed   atomic.Bool
	)
	next.Store(1)
	for range min(conns, n-1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
