package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// fifo is a first-in first-out queue.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) push(v T) { q.items = append(q.items, v) }

func (q *fifo[T]) len() int { return len(q.items) - q.head }

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.len() == 0 {
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head > 1024 && q.head*2 > len(q.items) { // reclaim the consumed front
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return v, true
}

func (q *fifo[T]) peek() (T, bool) {
	var zero T
	if q.len() == 0 {
		return zero, false
	}
	return q.items[q.head], true
}

// sendLog remembers a user's recent sends so that the benchmark never asks
// for a PIN the service's send limits would refuse (see benchSettings).
type sendLog struct {
	times    [20]time.Time // ring of the latest sends
	n        int
	verified bool // the latest PIN was verified: no resend interval applies
}

// Limits the benchmark keeps, a little inside benchSettings.
const (
	resendGap    = 10*time.Second + 500*time.Millisecond
	sendWindow   = 61 * time.Second
	sendsAllowed = 18
)

// canStart reports whether a send at now stays inside the limits.
func (s *sendLog) canStart(now time.Time) bool {
	if s.n > 0 {
		last := s.times[(s.n-1)%len(s.times)]
		if !s.verified && now.Sub(last) < resendGap {
			return false
		}
	}
	recent := 0
	for i := range min(s.n, len(s.times)) {
		if now.Sub(s.times[i]) < sendWindow {
			recent++
		}
	}
	return recent < sendsAllowed
}

// record notes a send at now.
func (s *sendLog) record(now time.Time) {
	s.times[s.n%len(s.times)] = now
	s.n++
	s.verified = false
}

// pinUser is one user of a PIN pool.
type pinUser struct {
	id         string
	pin        string // the pending PIN
	checksLeft int    // checks still to send against pin
	sends      sendLog
}

// pinPool holds users that cycle through "start a PIN, check it W times
// wrong, then once right", for the check and mix scenarios. A user's
// checks are spread out: after each check the user goes to the back of
// the pending queue.
type pinPool struct {
	api     *api
	capture *capture
	wrong   int   // wrong checks per PIN before the right one
	bulk    *bool // whether the server has the bulk endpoint, for extra users
	created int   // users registered beyond the seeded ones

	mu          sync.Mutex
	idle        fifo[*pinUser] // users that may get a new PIN
	reserve     fifo[*pinUser] // users with a fresh PIN, not yet checked
	pending     fifo[*pinUser] // users being checked, round-robin
	checksReady int            // sum of checksLeft over reserve and pending
	lostPINs    int            // starts whose message never reached the capture
}

// newPINPool returns a pool over the given users.
func newPINPool(a *api, c *capture, uids []string, wrong int, bulk *bool) *pinPool {
	p := &pinPool{api: a, capture: c, wrong: wrong, bulk: bulk}
	for _, id := range uids {
		p.idle.push(&pinUser{id: id})
	}
	return p
}

var (
	startBody     = []byte(`{"method": "sms"}`)
	expectInvalid = []byte(`"result":"INVALID"`)
	expectOK      = []byte(`"verified":true`)
)

// nextStart takes a user that may get a new PIN and returns its start
// request; the answer moves the user to the pending queue. Callers hold p.mu.
func (p *pinPool) nextStart(now time.Time) (request, bool) {
	for range p.idle.len() {
		u, _ := p.idle.pop()
		if !u.sends.canStart(now) {
			p.idle.push(u)
			continue
		}
		u.sends.record(now)
		return request{method: "POST", path: p.api.userPath(u.id) + "/auth", body: startBody, want: 200, label: "start",
			done: func(status int, body []byte) { p.started(u, status, body) }}, true
	}
	return request{}, false
}

// started files the answer to a start.
func (p *pinPool) started(u *pinUser, status int, body []byte) {
	var ans struct {
		AuthID string `json:"auth_id"`
	}
	pin, ok := "", false
	if status == 200 && json.Unmarshal(body, &ans) == nil {
		pin, ok = p.capture.take(ans.AuthID) // the webhook delivery finished before the start answered
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		if status == 200 {
			p.lostPINs++
		}
		p.idle.push(u)
		return
	}
	u.pin, u.checksLeft = pin, p.wrong+1
	p.reserve.push(u)
	p.checksReady += u.checksLeft
}

// rotation is how many users are checked round-robin at a time: enough
// that one user's checks are about rotation requests apart (more than the
// connections in flight), few enough that any stretch of requests holds
// the intended mix of wrong and right codes.
const rotation = 256

// nextCheck returns the next check: a wrong code while the user's PIN has
// wrong checks left, then the right one, whose answer frees the user for a
// new PIN. Callers hold p.mu.
func (p *pinPool) nextCheck() (request, bool) {
	for p.pending.len() < rotation {
		u, ok := p.reserve.pop()
		if !ok {
			break
		}
		p.pending.push(u)
	}
	u, ok := p.pending.pop()
	if !ok {
		return request{}, false
	}
	p.checksReady--
	u.checksLeft--
	r := request{method: "PUT", path: p.api.userPath(u.id) + "/auth", want: 200}
	if u.checksLeft > 0 {
		r.body, r.expect, r.label = tokenBody(wrongCode(u.pin)), expectInvalid, "wrong"
		p.pending.push(u)
		return r, true
	}
	r.body, r.expect, r.label = tokenBody(u.pin), expectOK, "right"
	r.done = func(status int, body []byte) {
		p.mu.Lock()
		defer p.mu.Unlock()
		u.sends.verified = status == 200 && bytes.Contains(body, expectOK)
		p.idle.push(u)
	}
	return r, true
}

// tokenBody is the body of a PIN check.
func tokenBody(code string) []byte { return []byte(`{"token": "` + code + `"}`) }

// startable counts the idle users that may get a PIN at now. Callers hold p.mu.
func (p *pinPool) startable(now time.Time) int {
	n := 0
	for i := p.idle.head; i < len(p.idle.items); i++ {
		if p.idle.items[i].sends.canStart(now) {
			n++
		}
	}
	return n
}

// ensureStartable registers users (unmeasured) until n idle users may get
// a PIN now: the send limits allow each user only 18 PINs a minute.
func (p *pinPool) ensureStartable(ctx context.Context, n, conns int) error {
	p.mu.Lock()
	missing := n - p.startable(time.Now())
	p.mu.Unlock()
	if missing <= 0 {
		return nil
	}
	ids, err := p.api.createUsers(ctx, "pool-extra-", p.created, missing, conns, p.bulk)
	if err != nil {
		return fmt.Errorf("register users for the PIN pool: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		p.idle.push(&pinUser{id: id})
	}
	p.created += missing
	return nil
}

// fill starts PINs, unmeasured, until about want checks are ready (or
// every idle user that may get one has one), with conns parallel requests.
// It registers users when the idle ones cannot carry want.
func (p *pinPool) fill(ctx context.Context, want, conns int) error {
	if want > 0 {
		p.mu.Lock()
		need := int(math.Ceil(float64(want-p.checksReady) / float64(p.wrong+1)))
		p.mu.Unlock()
		if err := p.ensureStartable(ctx, need, conns); err != nil {
			return err
		}
	}
	p.mu.Lock()
	need := p.idle.len()
	if want > 0 {
		need = min(need, int(math.Ceil(float64(want-p.checksReady)/float64(p.wrong+1))))
	}
	var reqs []request
	now := time.Now()
	for range max(need, 0) {
		r, ok := p.nextStart(now)
		if !ok {
			break
		}
		reqs = append(reqs, r)
	}
	p.mu.Unlock()
	return parallelDo(ctx, len(reqs), conns, func(i int) error {
		status, body, err := p.api.tg.do(ctx, reqs[i])
		reqs[i].done(status, body)
		if err != nil {
			return err
		}
		if status != 200 {
			return &statusError{method: "POST", path: reqs[i].path, status: status, body: string(body)}
		}
		return nil
	})
}

// checkScenario measures checks only: every PIN is started outside the
// measurement, then checked wrong W times and right once.
type checkScenario struct {
	pool  *pinPool
	conns int
}

func (s *checkScenario) prepare(ctx context.Context, want int) (targeter, error) {
	if err := s.pool.fill(ctx, want, s.conns); err != nil {
		return nil, err
	}
	return func(int, time.Time) (request, bool) {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		return s.pool.nextCheck()
	}, nil
}

func (s *checkScenario) describe() string {
	w := s.pool.wrong
	return fmt.Sprintf("PUT …/auth {\"token\"}: per PIN %d wrong code(s) then the right one (%.0f%% right), "+
		"each user's checks spread round-robin over the pool; PINs started before the clock runs, learnt through the webhook capture; "+
		"a user's next PIN starts only after its right check", w, 100/float64(w+1))
}

// mixScenario measures 80% checks and 20% starts: every measured start's
// PIN is checked 3 times wrong and once right by later measured requests.
type mixScenario struct {
	pool  *pinPool
	conns int
	prime int // users given a PIN before the clock runs, so checks can begin at once
}

func (s *mixScenario) prepare(ctx context.Context, want int) (targeter, error) {
	// A fifth of the requests are starts; a user can take a few of them
	// in one segment (it may restart as soon as its PIN is verified).
	if err := s.pool.ensureStartable(ctx, want/5/4, s.conns); err != nil {
		return nil, err
	}
	s.pool.mu.Lock()
	missing := s.prime*(s.pool.wrong+1) - s.pool.checksReady
	s.pool.mu.Unlock()
	if missing > 0 {
		if err := s.pool.fill(ctx, missing, s.conns); err != nil {
			return nil, err
		}
	}
	return func(i int, t time.Time) (request, bool) {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		if i%5 == 0 {
			if r, ok := s.pool.nextStart(t); ok {
				return r, true
			}
			return s.pool.nextCheck()
		}
		if r, ok := s.pool.nextCheck(); ok {
			return r, true
		}
		return s.pool.nextStart(t)
	}, nil
}

func (s *mixScenario) describe() string {
	return "every 5th request POST …/auth {\"method\":\"sms\"} (webhook sender to the capture server), the others PUT …/auth checks of " +
		"PINs those starts sent: 3 wrong then 1 right per PIN (20% start, 60% wrong, 20% right); " +
		strconv.Itoa(s.prime) + " users get a PIN before the clock runs so checks can begin at once"
}

// notes describes the pool for the report.
func (p *pinPool) notes(seeded int) []string {
	out := []string{fmt.Sprintf("PIN pool of %d seeded users", seeded)}
	if p.created > 0 {
		out = append(out, fmt.Sprintf("%d more users registered (unmeasured) to stay inside 18 PINs per user per minute", p.created))
	}
	if p.lostPINs > 0 {
		out = append(out, fmt.Sprintf("%d starts answered 200 but their message never reached the capture", p.lostPINs))
	}
	return out
}
