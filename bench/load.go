package main

// The load generator. It is written here rather than taken from vegeta
// (which docs/dependencies.md lists) for three reasons: vegeta measures
// latency from when a request was actually sent, not from when the
// schedule said it should be sent, so a stalled server hides its own queue
// (coordinated omission); it has no closed-loop mode with a fixed number of
// keep-alive connections, which the peak measurement needs; and the
// scenarios need a per-response hook (a start's auth_id feeds the next
// checks), which vegeta's Targeter cannot see.

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// request is one measured HTTP request.
type request struct {
	method string
	path   string // appended to the target's base URL
	body   []byte
	want   int    // the status that counts as success
	expect []byte // if set, the body must contain it to count as success
	label  string // outcomes are counted per label ("right", "wrong", "start", …)
	// done, if set, sees every answer (status 0 on a transport error). It
	// runs on a load worker, so it must be quick and goroutine-safe.
	done func(status int, body []byte)
}

// targeter returns the request for operation i, scheduled at t, or false
// when the scenario has nothing left to send (its pool is used up). The
// generator calls it from one goroutine at a time.
type targeter func(i int, t time.Time) (request, bool)

// target is where measured requests go.
type target struct {
	base   string // e.g. http://127.0.0.1:8080
	auth   string // X-Service-Auth value, if any
	client *rawClient
}

// newTarget returns a target with its own connection pool.
func newTarget(base, auth string) (*target, error) {
	c, err := newRawClient(base)
	if err != nil {
		return nil, err
	}
	return &target{base: base, auth: auth, client: c}, nil
}

// do sends r and returns the status and body (status 0 and the error on a
// transport failure).
func (tg *target) do(ctx context.Context, r request) (int, []byte, error) {
	return tg.client.do(ctx, r.method, r.path, tg.auth, r.body)
}

// close closes the target's idle connections.
func (tg *target) close() { tg.client.closeIdle() }

// segment is the outcome of one uninterrupted run of the generator.
type segment struct {
	ops       int             // requests answered or failed
	ok        int             // requests that met their expectation
	elapsed   time.Duration   // from the first send to the last answer
	scheduled time.Duration   // open loop: the span the sent slots covered
	latencies []time.Duration // one per request answered as expected; open loop: from its scheduled time
	lags      []time.Duration // open loop: actual send time minus scheduled time
	failures  map[string]int  // why requests failed, e.g. "status 429"
	labels    map[string]int  // successful requests per label
	exhausted bool            // the targeter ran out before the time did
}

// recorder collects one segment's samples from many workers.
type recorder struct {
	mu  sync.Mutex
	seg segment
}

func newRecorder() *recorder {
	return &recorder{seg: segment{failures: map[string]int{}, labels: map[string]int{}}}
}

// exchange sends r, checks the answer against r's expectation and records
// it; latency is measured from `from`, which the open loop sets to the
// scheduled time.
func (rec *recorder) exchange(ctx context.Context, tg *target, r request, from, sent time.Time, open bool) {
	status, body, err := tg.do(ctx, r)
	lat := time.Since(from)
	if r.done != nil {
		r.done(status, body)
	}
	failure := ""
	switch {
	case err != nil && ctx.Err() != nil:
		return // cancelled: neither a sample nor a failure
	case err != nil:
		failure = "transport error"
	case status != r.want:
		failure = fmt.Sprintf("status %d", status)
	case r.expect != nil && !bytes.Contains(body, r.expect):
		failure = "unexpected body for " + r.label
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := &rec.seg
	s.ops++
	if open {
		s.lags = append(s.lags, sent.Sub(from))
	}
	if failure != "" {
		// Not a latency sample: a refusal (429, a THROTTLED check that
		// wrote nothing) is faster than the work measured, a timeout
		// slower; the errors column counts it instead.
		s.failures[failure]++
		return
	}
	s.ok++
	s.latencies = append(s.latencies, lat)
	s.labels[r.label]++
}

// runClosed drives tg with conns workers, each sending its next request as
// soon as the previous one is answered, until d has passed or next is used
// up. Its throughput is the server's peak for this request mix.
func runClosed(ctx context.Context, tg *target, next targeter, conns int, d time.Duration) segment {
	rec := newRecorder()
	var (
		mu        sync.Mutex // serializes next
		i         int
		exhausted atomic.Bool
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				mu.Lock()
				r, ok := next(i, time.Now())
				i++
				mu.Unlock()
				if !ok {
					exhausted.Store(true)
					return
				}
				sent := time.Now()
				rec.exchange(ctx, tg, r, sent, sent, false)
			}
		}()
	}
	wg.Wait()
	rec.seg.elapsed = time.Since(start)
	rec.seg.exhausted = exhausted.Load()
	return rec.seg
}

// runOpen sends requests at a constant rate for d, whatever the server's
// answers do: slot k is due at start + k/rate and joins a queue that conns
// workers, each with its own keep-alive connection, serve in order. Each
// latency is measured from the slot's due time, so time spent queued
// behind a slow server is part of the latency instead of silently delaying
// later requests (no coordinated omission), as in wrk2. The connections
// are fixed, as in a real client's pool: letting them grow without bound
// when the server stalls for a moment turns the stall into a meltdown of
// thousands of connections on a two-core machine. The schedule stops
// early if next is used up.
func runOpen(ctx context.Context, tg *target, next targeter, rate float64, d time.Duration, conns int) segment {
	type job struct {
		r  request
		at time.Time
	}
	clock, err := newSlotClock(ctx)
	if err != nil {
		panic(err) // Linux has had timerfd since 2.6.25: not a condition to handle
	}
	defer clock.close()
	rec := newRecorder()
	n := slotCount(rate, d)
	jobs := make(chan job, min(max(n, 1), 1<<20)) // the backlog waits here, never in the dispatcher
	var wg sync.WaitGroup
	for range min(conns, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain without sending
				}
				rec.exchange(ctx, tg, j.r, j.at, time.Now(), true)
			}
		}()
	}
	start := time.Now().Add(5 * time.Millisecond)
	sentSlots := 0
	for k := range n {
		at := slotTime(start, k, rate)
		if !clock.until(at) {
			break
		}
		r, ok := next(k, at)
		if !ok {
			rec.seg.exhausted = true
			break
		}
		jobs <- job{r, at} // never blocks: the buffer holds every slot
		sentSlots++
	}
	close(jobs)
	wg.Wait()
	rec.seg.elapsed = time.Since(start)
	rec.seg.scheduled = time.Duration(float64(sentSlots) / rate * float64(time.Second))
	return rec.seg
}

// merge adds s's samples to m.
func (m *segment) merge(s segment) {
	if m.failures == nil {
		m.failures, m.labels = map[string]int{}, map[string]int{}
	}
	m.ops += s.ops
	m.ok += s.ok
	m.elapsed += s.elapsed
	m.scheduled += s.scheduled
	m.latencies = append(m.latencies, s.latencies...)
	m.lags = append(m.lags, s.lags...)
	for k, v := range s.failures {
		m.failures[k] += v
	}
	for k, v := range s.labels {
		m.labels[k] += v
	}
	m.exhausted = m.exhausted || s.exhausted
}
