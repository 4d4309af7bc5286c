package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// scenario is one measured workload against a running server.
type scenario interface {
	// prepare readies about want operations outside measurement (starts
	// PINs, creates users, enrols apps) and returns the targeter that
	// sends them. want is 0 when the rate is not known yet: then prepare
	// readies what its pool holds. A targeter may yield fewer or more
	// operations than want.
	prepare(ctx context.Context, want int) (targeter, error)
	// describe says how the scenario's requests are built, for the report.
	describe() string
}

// phaseResult is one phase (closed or open loop) of one scenario.
type phaseResult struct {
	segment
	segments  int
	cpuMicros float64 // server CPU time over the measured segments
	selfCPU   float64 // load generator CPU time over the measured segments
	dbCPU     float64 // PostgreSQL's CPU time (all its processes), 0 for SQLite
	otherCPU  float64 // every other process's CPU time meanwhile: noise
	stalls    stallSummary
}

// meter accumulates CPU time over measured segments.
type meter interface {
	begin()
	end()
	micros() float64
}

// meters measures the CPU time of the server, the benchmark, PostgreSQL
// (when used) and the whole machine over a phase's measured segments, and
// what the stall probe saw meanwhile.
type meters []meter

// newMeters returns the meters in the order record expects.
func newMeters(serverPID int, postgres bool) meters {
	var db meter = &groupMeter{comm: "postgres"}
	if !postgres {
		db = &cpuMeter{read: func() (int64, error) { return 0, nil }}
	}
	return meters{processMeter(serverPID), processMeter(selfPID), db, machineMeter(), &stallMeter{probe: machineProbe}}
}

func (m meters) begin() {
	for _, x := range m {
		x.begin()
	}
}

func (m meters) end() {
	for _, x := range m {
		x.end()
	}
}

// record stores the meters' totals in p.
func (m meters) record(p *phaseResult) {
	p.cpuMicros, p.selfCPU, p.dbCPU = m[0].micros(), m[1].micros(), m[2].micros()
	p.otherCPU = max(0, m[3].micros()-p.cpuMicros-p.selfCPU-p.dbCPU)
	p.stalls = m[4].(*stallMeter).summary()
}

// throughput is successful responses per second of measured time.
func (p *phaseResult) throughput() float64 {
	return ratio(float64(p.ok), p.elapsed.Seconds())
}

// maxSegments bounds how often a phase may stop to refill its pool.
const maxSegments = 40

// measureClosed runs the closed-loop phase for d of measured time. When the
// scenario's pool runs out early, it refills it (unmeasured) and goes on,
// sizing the refill from the throughput seen so far.
func measureClosed(ctx context.Context, sc scenario, tg *target, conns int, d time.Duration, m meters) (phaseResult, error) {
	var res phaseResult
	for res.elapsed < d-50*time.Millisecond && res.segments < maxSegments {
		remaining := d - res.elapsed
		want := 0
		if res.ok > 0 {
			want = int(math.Ceil(res.throughput() * remaining.Seconds() * 1.25))
		}
		next, err := sc.prepare(ctx, want)
		if err != nil {
			return res, err
		}
		logf("  closed loop, %d connections, %s", conns, remaining.Round(time.Millisecond))
		m.begin()
		seg := runClosed(ctx, tg, next, conns, remaining)
		m.end()
		res.merge(seg)
		res.segments++
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if seg.ops == 0 {
			return res, fmt.Errorf("the scenario had nothing to send")
		}
		if !seg.exhausted {
			break
		}
	}
	return res, nil
}

// measureOpen runs the open-loop phase at rate for d of scheduled time,
// refilling the pool (unmeasured) between segments when it runs out.
func measureOpen(ctx context.Context, sc scenario, tg *target, rate float64, d time.Duration, openConns int, m meters) (phaseResult, error) {
	var res phaseResult
	for res.scheduled < d-50*time.Millisecond && res.segments < maxSegments {
		remaining := d - res.scheduled
		next, err := sc.prepare(ctx, slotCount(rate, remaining))
		if err != nil {
			return res, err
		}
		logf("  open loop at %.0f/s, %s", rate, remaining.Round(time.Millisecond))
		m.begin()
		seg := runOpen(ctx, tg, next, rate, remaining, openConns)
		m.end()
		res.merge(seg)
		res.segments++
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if seg.ops == 0 {
			return res, fmt.Errorf("the scenario had nothing to send at %.0f/s", rate)
		}
		if !seg.exhausted {
			break
		}
	}
	return res, nil
}

// measurement is a scenario's closed- and open-loop results.
type measurement struct {
	closed, open phaseResult
	openRate     float64
	cpuPerOp     float64 // server µs per operation over both phases
	selfPerOp    float64 // load generator µs per operation over both phases
	dbPerOp      float64 // PostgreSQL µs per operation over both phases
}

// measure runs a scenario's two phases: closed loop for the peak, then open
// loop at fraction of that peak for the latency percentiles.
func measure(ctx context.Context, sc scenario, tg *target, cfg *config, serverPID int) (measurement, error) {
	var m measurement
	closed := newMeters(serverPID, cfg.db == "postgres")
	var err error
	m.closed, err = measureClosed(ctx, sc, tg, cfg.conns, cfg.closedDur, closed)
	closed.record(&m.closed)
	if err != nil {
		return m, fmt.Errorf("closed loop: %w", err)
	}
	m.openRate = cfg.openFraction * m.closed.throughput()
	if m.openRate < 1 {
		return m, fmt.Errorf("closed loop reached no throughput (%d ok of %d)", m.closed.ok, m.closed.ops)
	}
	open := newMeters(serverPID, cfg.db == "postgres")
	m.open, err = measureOpen(ctx, sc, tg, m.openRate, cfg.openDur, cfg.openConns, open)
	open.record(&m.open)
	ops := float64(m.closed.ops + m.open.ops)
	m.cpuPerOp = ratio(m.closed.cpuMicros+m.open.cpuMicros, ops)
	m.selfPerOp = ratio(m.closed.selfCPU+m.open.selfCPU, ops)
	m.dbPerOp = ratio(m.closed.dbCPU+m.open.dbCPU, ops)
	if err != nil {
		return m, fmt.Errorf("open loop: %w", err)
	}
	return m, nil
}
