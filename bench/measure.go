package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/verityhq/verity/sqlite"
	"github.com/verityhq/verity/totp"
)

// fixedScenario sends the same request forever: the HTTP ceiling's load.
type fixedScenario struct{ req request }

func (s *fixedScenario) prepare(context.Context, int) (targeter, error) {
	return func(int, time.Time) (request, bool) { return s.req, true }, nil
}

func (s *fixedScenario) describe() string {
	return "PUT /ceiling {\"token\"} to a minimal net/http server in its own process, answering a check-sized JSON body"
}

// noisy is how busy, in cores, other processes may keep the machine
// during the HTTP ceiling before it is measured again at the end.
const noisy = 0.3

// noise is the larger of a row's two "other processes" figures.
func (s *scenarioResult) noise() float64 { return max(s.Closed.OtherCPUCores, s.Open.OtherCPUCores) }

// startCeilingServer starts the HTTP ceiling server: this program's hidden
// subcommand, a minimal net/http server in its own process.
func (r *runner) startCeilingServer(ctx context.Context) (*process, *target, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, err
	}
	p, err := startProcess(ctx, "ceiling server", exe, addr, ceilingServerCommand, addr)
	if err != nil {
		return nil, nil, err
	}
	r.track(p)
	tg, err := newTarget(p.base, "")
	if err != nil {
		r.release(p)
		return nil, nil, err
	}
	return p, tg, nil
}

// ceilingScenario is the HTTP ceiling's load: one check-sized PUT.
func ceilingScenario() *fixedScenario {
	return &fixedScenario{req: request{method: "PUT", path: "/ceiling", body: tokenBody("123456"), want: 200, label: "ceiling"}}
}

// measureHTTPCeiling measures the HTTP ceiling server the way the
// scenarios are measured.
func (r *runner) measureHTTPCeiling(ctx context.Context) (scenarioResult, error) {
	logf("HTTP ceiling")
	busy := waitQuiet(ctx, r.cfg.quietWait)
	p, tg, err := r.startCeilingServer(ctx)
	if err != nil {
		return scenarioResult{}, err
	}
	sc := ceilingScenario()
	m, err := measure(ctx, sc, tg, r.cfg, p.pid)
	tg.close()
	rss, _ := peakRSS(p.pid)
	if stopErr := r.release(p); err == nil {
		err = stopErr
	}
	if err != nil {
		return scenarioResult{}, fmt.Errorf("HTTP ceiling: %w", err)
	}
	res := newScenarioResult("HTTP ceiling", sc.describe(), m, rss)
	if busy >= quietThreshold {
		res.Notes = append(res.Notes, fmt.Sprintf("the machine was still %.2f cores busy with other work when this started", busy))
	}
	return res, nil
}

// adjacentCeilingMax bounds the closed loop of the HTTP ceiling measured
// right after each row.
const adjacentCeilingMax = 3 * time.Second

// measureAdjacentCeiling measures the HTTP ceiling's closed loop again, for
// -closed or adjacentCeilingMax, whichever is shorter. Run right after a
// row, it shares the row's moment: this machine's speed drifts by tens of
// percent within minutes (two runs of one commit, minutes apart, gave one
// row 27,012 and 17,100/s), so a row's share of this ceiling says more
// about Verity than its share of the one measured at the start of the run.
//
// Then, when openRate is at least 1/s, the latency floor: the same server
// in open loop at the row's open-loop rate, with the same connections and
// for the same time, the latency a server that does nothing shows at that
// load, on this machine, with this generator beside it, at the row's
// moment too. Measured after every row instead, minutes later, a floor's
// p99 moved fivefold between runs (a single 100-200 ms episode sets it).
func (r *runner) measureAdjacentCeiling(ctx context.Context, openRate float64) (adjacent, floor *phaseJSON, err error) {
	syscall.Sync() // the row's writes, out of the way first, as before a row
	waitQuiet(ctx, r.cfg.quietWait)
	p, tg, err := r.startCeilingServer(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, r.release(p)) }()
	defer tg.close()
	m := newMeters(p.pid, r.cfg.db == "postgres") // as the run's own ceiling is metered
	ph, err := measureClosed(ctx, ceilingScenario(), tg, r.cfg.conns, min(r.cfg.closedDur, adjacentCeilingMax), m)
	m.record(&ph)
	if err == nil && ph.ok == 0 {
		err = fmt.Errorf("no request answered as expected (%d sent)", ph.ops)
	}
	if err != nil {
		return nil, nil, err
	}
	closed := newPhaseJSON(ph, 0)
	if openRate < 1 {
		return &closed, nil, nil
	}
	waitQuiet(ctx, r.cfg.quietWait)
	m = newMeters(p.pid, false)
	ph, err = measureOpen(ctx, ceilingScenario(), tg, openRate, r.cfg.openDur, r.cfg.openConns, m)
	m.record(&ph) // for the stall probe: the floor's own machine stalls
	if err != nil {
		return &closed, nil, fmt.Errorf("latency floor at %.0f/s: %w", openRate, err)
	}
	open := newPhaseJSON(ph, openRate)
	return &closed, &open, nil
}

// remeasureNoisyHTTPCeiling measures the HTTP ceiling again when other
// processes disturbed the first measurement, and keeps the quieter one.
func (r *runner) remeasureNoisyHTTPCeiling(ctx context.Context) error {
	first := r.results.HTTPCeiling
	if first == nil || first.noise() < noisy {
		return nil
	}
	second, err := r.measureHTTPCeiling(ctx)
	if err != nil {
		return err
	}
	kept, other := &second, first
	if first.noise() <= second.noise() {
		kept, other = first, &second
	}
	kept.Notes = append(kept.Notes, fmt.Sprintf("measured twice because other processes kept the CPUs busy; "+
		"kept the quieter run (%.2f cores of other work), the other gave a peak of %s/s", kept.noise(), num(other.Peak)))
	r.results.HTTPCeiling = kept
	return nil
}

// measureCeilings measures the HTTP ceiling, the storage ceiling and,
// with PostgreSQL, the pgbench ceilings.
func (r *runner) measureCeilings(ctx context.Context) error {
	res, err := r.measureHTTPCeiling(ctx)
	if err != nil {
		return err
	}
	r.results.HTTPCeiling = &res
	if err := r.measureStorageCeiling(ctx); err != nil {
		return err
	}
	if r.pg != nil {
		return r.measurePgbenchCeiling(ctx)
	}
	return nil
}

// measureStorageCeiling measures the store's check writes in-process.
func (r *runner) measureStorageCeiling(ctx context.Context) error {
	logf("storage ceiling (%s, %d users)", r.cfg.db, min(r.cfg.pool, storageUsers))
	waitQuiet(ctx, r.cfg.quietWait)
	dir := filepath.Join(r.tmp, "storage")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var err error
	pgURL := ""
	if r.pg != nil {
		if pgURL, err = r.pg.create(ctx, "store", ""); err != nil {
			return err
		}
	}
	fsync, fsyncErr := probeFsync(dir)
	st, err := measureStorage(ctx, storageDSN(dir, withPool(pgURL, r.cfg.pgPool)), sqlite.Sync(r.cfg.sqliteSync), min(r.cfg.pool, storageUsers), r.cfg.wrong, r.cfg.conns, r.cfg.storageDur)
	st.Fsync = fsync
	if fsyncErr != nil {
		st.Note = "fsync probe failed: " + fsyncErr.Error()
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		st.Note = "failed: " + err.Error()
		logf("storage ceiling failed: %v", err)
	}
	r.results.Storage = &st
	return os.RemoveAll(dir)
}

// rowSpec is how to measure one row: its server's sender and its scenario,
// built against the data set the row runs on.
type rowSpec struct {
	name    string
	webhook bool // the server needs the webhook sender (to learn PINs)
	build   func(a *api, ds *dataset) scenario
}

// rows returns the rows of one -scenarios entry; "create" has two.
func (r *runner) rows(name string) []rowSpec {
	pool := func(ds *dataset) []string { return ds.uids[:min(len(ds.uids), r.cfg.pool)] }
	switch name {
	case "check":
		return []rowSpec{{"check", true, func(a *api, ds *dataset) scenario {
			return &checkScenario{pool: newPINPool(a, r.capture, pool(ds), r.cfg.wrong, &r.bulk), conns: 16}
		}}}
	case "mix":
		return []rowSpec{{"mix", true, func(a *api, ds *dataset) scenario {
			p := pool(ds)
			return &mixScenario{pool: newPINPool(a, r.capture, p, 3, &r.bulk), conns: 16, prime: min(max(len(p)/4, 16), 500)}
		}}}
	case "start":
		return []rowSpec{{"start", false, func(a *api, ds *dataset) scenario { return newStartScenario(a, ds.uids, 16, &r.bulk) }}}
	case "totp":
		return []rowSpec{{"totp", false, func(a *api, ds *dataset) scenario {
			return &totpScenario{api: a, uids: ds.uids, initial: r.cfg.totpUsers, conns: 16, bulk: &r.bulk, params: totp.DefaultParams()}
		}}}
	case "create":
		return []rowSpec{
			{"create", false, func(a *api, _ *dataset) scenario { return &createScenario{api: a, perRequest: 1, prefix: "create-"} }},
			{"create-bulk", false, func(a *api, _ *dataset) scenario { return &createScenario{api: a, perRequest: 100, prefix: "bulk-"} }},
		}
	}
	return nil
}

// runScenarios measures every row of the -scenarios entries, then measures
// once more each row that other processes disturbed and keeps the quieter.
func (r *runner) runScenarios(ctx context.Context) error {
	var specs []rowSpec
	for _, name := range r.cfg.scenarios {
		for _, spec := range r.rows(name) {
			if spec.name == "create-bulk" && !r.bulk {
				r.results.add(scenarioResult{Name: spec.name, Skipped: "the server has no POST …/users/bulk (it answered 404)"})
				continue
			}
			res, err := r.runRow(ctx, spec, r.data)
			if err != nil {
				return err
			}
			r.results.add(res)
			specs = append(specs, spec)
			if r.compare != nil {
				if err := r.compareRow(ctx, spec, res); err != nil {
					return err
				}
			}
		}
	}
	if !r.cfg.retryNoisy {
		return nil
	}
	for _, spec := range specs {
		i := slices.IndexFunc(r.results.Scenarios, func(s scenarioResult) bool { return s.Name == spec.name })
		first := r.results.Scenarios[i]
		if first.noise() < noisy || first.Error != "" {
			continue
		}
		logf("scenario %s again: other processes kept %.2f cores busy during it", spec.name, first.noise())
		second, err := r.runRow(ctx, spec, r.data)
		if err != nil {
			return err
		}
		kept, other := second, first
		if first.noise() <= second.noise() || second.Error != "" {
			kept, other = first, second
		}
		kept.Notes = append(kept.Notes, fmt.Sprintf("measured twice because other processes kept the CPUs busy; "+
			"kept the quieter run (%.2f cores of other work), the other gave a peak of %s/s and p99 %.2f ms", kept.noise(), num(other.Peak), other.Open.Latency.P99))
		r.results.Scenarios[i] = kept
	}
	return nil
}

// runRow starts a server on a fresh copy of data set ds and measures one
// row. A failure inside the scenario is recorded in the row, not returned,
// so the other scenarios still run; only cancellation and setup failures
// stop the run.
func (r *runner) runRow(ctx context.Context, spec rowSpec, ds *dataset) (scenarioResult, error) {
	name, webhook := spec.name, spec.webhook
	logf("scenario %s (%s users)", name, num(float64(ds.users)))
	res := scenarioResult{Name: name}
	dir, dbURL, err := r.clone(ctx, name, ds)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	syscall.Sync() // let the previous scenario's writes and deletes settle first
	if busy := waitQuiet(ctx, r.cfg.quietWait); busy >= quietThreshold {
		res.Notes = append(res.Notes, fmt.Sprintf("the machine was still %.2f cores busy with other work when this scenario started", busy))
	}
	p, err := r.startVerity(ctx, name, dir, dbURL, webhook)
	if err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		res.Error = err.Error()
		return res, nil
	}
	setup, err1 := newTarget(p.base, p.credentials())
	tg, err2 := newTarget(p.base, p.credentials())
	if err := errors.Join(err1, err2); err != nil {
		r.release(p)
		return res, err
	}
	sc := spec.build(&api{tg: setup, sid: ds.sid}, ds)
	m, err := measure(ctx, sc, tg, r.cfg, p.pid)
	setup.close()
	tg.close()
	rss, _ := peakRSS(p.pid)
	stopErr := r.release(p)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	notes := res.Notes
	res = newScenarioResult(name, sc.describe(), m, rss)
	res.Notes = notes
	if err != nil {
		res.Error = err.Error()
		logf("scenario %s: %v", name, err)
	} else if stopErr != nil {
		res.Error = stopErr.Error()
	}
	switch sc := sc.(type) {
	case *startScenario:
		if sc.created > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d users registered (unmeasured) beyond the %d seeded, to keep every user to one start per 10.5 s", sc.created, len(ds.uids)))
		}
	case *totpScenario:
		res.Notes = append(res.Notes, fmt.Sprintf("enrolling %d apps (POST …/totp with its QR PNG, then PUT …/totp) took %.1f s with %d in parallel, %.0f/s",
			sc.enrolled, sc.enrolFor.Seconds(), sc.conns, ratio(float64(sc.enrolled), sc.enrolFor.Seconds())))
		if sc.created > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d of them registered (unmeasured) beyond the %d seeded, to keep every user inside its failure budget", sc.created, len(ds.uids)))
		}
	case *createScenario:
		res.UsersPerSec = res.Peak * sc.usersPerOp()
	case *checkScenario:
		res.Notes = append(res.Notes, sc.pool.notes(min(len(ds.uids), r.cfg.pool))...)
	case *mixScenario:
		res.Notes = append(res.Notes, sc.pool.notes(min(len(ds.uids), r.cfg.pool))...)
	}
	if res.Peak > 0 {
		logf("  the HTTP ceiling next to it, and its latency floor")
		var openRate float64
		if res.Open.Ops > 0 {
			openRate = res.Open.TargetRate
		}
		adjacent, floor, err := r.measureAdjacentCeiling(ctx, openRate)
		res.AdjacentCeiling, res.LatencyFloor = adjacent, floor
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res.Notes = append(res.Notes, "the HTTP ceiling next to it, or its latency floor, failed: "+firstLine(err.Error()))
		}
		pb, err := r.measureAdjacentPgbench(ctx, name)
		res.AdjacentPgbench = pb
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case err != nil:
			res.Notes = append(res.Notes, "pgbench next to it failed: "+firstLine(err.Error()))
		}
	}
	return res, nil
}
