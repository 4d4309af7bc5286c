package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// runner holds one benchmark run's state and everything it must clean up.
type runner struct {
	cfg     *config
	tmp     string // removed at the end
	module  string
	bin     string // the built verity binary
	pg      *pgAdmin
	capture *capture
	pgbench []*pgbenchCeiling // prepared pgbench ceilings, for a noisy-run retry

	data    *dataset // the -users template every row runs on
	compare *dataset // -compare-users: the template rows are compared on; nil without it
	bulk    bool     // the server has POST …/users/bulk
	clones  int      // data copies made so far, for unique names

	mu    sync.Mutex
	procs []*process

	results results
}

// run does the whole benchmark and prints the table.
func (r *runner) run(ctx context.Context) error {
	var err error
	r.results = newResults(r.cfg)
	if r.tmp, err = os.MkdirTemp("", "verity-bench-"); err != nil {
		return err
	}
	if r.module, err = moduleRoot(ctx); err != nil {
		return err
	}
	logf("building ./cmd/verity")
	if r.bin, err = buildVerity(ctx, r.module, r.tmp); err != nil {
		return err
	}
	if r.cfg.db == "postgres" {
		if r.pg, err = newPGAdmin(ctx, r.cfg.postgresURL); err != nil {
			return err
		}
	}
	if r.capture, err = startCapture(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if machineProbe, err = startStallProbe(exe); err != nil {
		logf("%v; the run goes on without the machine stall figures", err) // they explain, they do not measure Verity
	}

	if err := r.measureCeilings(ctx); err != nil {
		return err
	}
	seedErr := r.seed(ctx)
	if seedErr != nil {
		if ctx.Err() != nil {
			return seedErr
		}
		logf("seeding failed, no scenario can run: %v", seedErr)
		r.results.Seed.Error = seedErr.Error()
	}
	if seedErr != nil {
		for _, name := range r.cfg.scenarios {
			r.results.add(scenarioResult{Name: name, Skipped: "seeding failed: " + firstLine(seedErr.Error())})
		}
	} else if err := r.runScenarios(ctx); err != nil {
		return err
	}
	if r.cfg.retryNoisy {
		if err := r.remeasureNoisyHTTPCeiling(ctx); err != nil {
			return err
		}
		if err := r.remeasureNoisyPgbench(ctx); err != nil {
			return err
		}
	}
	r.results.finish()
	fmt.Print(r.results.markdown())
	if err := r.results.write(r.cfg.out); err != nil {
		return err
	}
	logf("wrote %s", r.cfg.out)
	return nil
}

// cleanup stops every child process, drops the throwaway databases and
// removes the temporary folder. It runs on success, error and Ctrl-C.
func (r *runner) cleanup() error {
	r.mu.Lock()
	procs := r.procs
	r.procs = nil
	r.mu.Unlock()
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.stop())
	}
	if r.capture != nil {
		r.capture.close()
	}
	if machineProbe != nil {
		machineProbe.stop()
		machineProbe = nil
	}
	if r.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, r.pg.dropAll(ctx))
		cancel()
	}
	if r.tmp != "" {
		errs = append(errs, os.RemoveAll(r.tmp))
	}
	return errors.Join(errs...)
}

// track remembers p for cleanup.
func (r *runner) track(p *process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, p)
}

// release stops p and forgets it.
func (r *runner) release(p *process) error {
	r.mu.Lock()
	for i, q := range r.procs {
		if q == p {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	return p.stop()
}

// serveArgs is startVerity's command line: the run's database settings
// (the pool on PostgreSQL, the sync mode on SQLite, so the report's heading
// is what the server did), its sender, then -server-flags.
func (r *runner) serveArgs(addr, dataDir, dbURL string, webhook bool) []string {
	args := []string{"serve", "--dev", "--log-level", "warn", "--addr", addr, "--data-dir", dataDir}
	if dbURL != "" {
		args = append(args, "--db", withPool(dbURL, r.cfg.pgPool))
	} else {
		args = append(args, "--sqlite-sync", r.cfg.sqliteSync)
	}
	if webhook {
		args = append(args, "--sms-webhook", r.capture.url, "--sms-webhook-secret", r.capture.secret)
	} else {
		args = append(args, "--dev-sink", "discard")
	}
	return append(args, r.cfg.serverFlags...)
}

// startVerity runs `verity serve --dev` on dataDir (and dbURL for
// PostgreSQL), with the webhook sender pointed at the capture server when
// webhook is true and the discard sink otherwise.
func (r *runner) startVerity(ctx context.Context, name, dataDir, dbURL string, webhook bool) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(ctx, "verity ("+name+")", r.bin, addr, r.serveArgs(addr, dataDir, dbURL, webhook)...)
	if err != nil {
		return nil, err
	}
	r.track(p)
	if p.waitCredentials(5*time.Second) == "" {
		return p, fmt.Errorf("verity printed no dev credentials:\n%s", p.output())
	}
	return p, nil
}

// dataset is a seeded template: one service with benchSettings and its
// users, in a stopped server's data folder (and database), which every row
// copies.
type dataset struct {
	users int
	dir   string   // data dir of the template
	db    string   // postgres: the template database
	sid   string   // the service's id
	uids  []string // its users, in a spread order (see spreadOrder)
}

// seed creates the templates: -users users, and -compare-users in a second
// one when it is set.
func (r *runner) seed(ctx context.Context) error {
	var err error
	if r.data, r.results.Seed, err = r.seedDataset(ctx, "seed", r.cfg.users); err != nil {
		return err
	}
	if r.cfg.compareUsers > 0 {
		var info seedInfo
		if r.compare, info, err = r.seedDataset(ctx, "seed_compare", r.cfg.compareUsers); err != nil {
			return fmt.Errorf("-compare-users: %w", err)
		}
		r.results.Comparison = &usersComparison{Users: r.cfg.users, CompareUsers: r.cfg.compareUsers, Seed: info}
	}
	return nil
}

// seedDataset creates one template with users users, then stops its
// server so the data can be copied.
func (r *runner) seedDataset(ctx context.Context, name string, users int) (*dataset, seedInfo, error) {
	ds := &dataset{users: users, dir: filepath.Join(r.tmp, name)}
	var info seedInfo
	if r.pg != nil {
		u, err := r.pg.create(ctx, name, "")
		if err != nil {
			return nil, info, err
		}
		ds.db = u
	}
	p, err := r.startVerity(ctx, name, ds.dir, ds.db, false)
	if err != nil {
		return nil, info, err
	}
	tg, err := newTarget(p.base, p.credentials())
	if err != nil {
		r.release(p)
		return nil, info, err
	}
	defer tg.close()
	a := &api{tg: tg}
	if err := a.setupService(ctx); err != nil {
		r.release(p)
		return nil, info, err
	}
	ds.sid = a.sid
	logf("seeding %d users", users)
	start := time.Now()
	r.bulk = true
	ds.uids, err = a.createUsers(ctx, "u", 0, users, 16, &r.bulk)
	took := time.Since(start)
	if err != nil {
		r.release(p)
		return nil, info, fmt.Errorf("seed users: %w", err)
	}
	// ds.uids comes in a spread order (see spreadOrder): the users the
	// scenarios take from its front are spread over the whole data set.
	info = seedInfo{Users: users, Seconds: took.Seconds(), UsersPerSec: ratio(float64(users), took.Seconds()),
		Method: map[bool]string{true: "POST …/users/bulk (1000 per request, 4 in parallel)", false: "POST …/users (16 in parallel; no bulk endpoint)"}[r.bulk]}
	logf("seeded %d users in %.1fs (%s)", users, took.Seconds(), info.Method)
	return ds, info, r.release(p)
}

// quietThreshold is the machine-wide CPU use, in cores, below which a
// measurement may start.
const quietThreshold = 0.15

// waitQuiet waits, up to limit, until the machine's CPUs are nearly idle
// (other work on a shared machine skews every figure), and returns the
// last busy level seen, in cores.
func waitQuiet(ctx context.Context, limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		m := machineMeter()
		m.begin()
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(500 * time.Millisecond):
		}
		m.end()
		busy := m.micros() / 1e6 / time.Since(t0).Seconds()
		if busy < quietThreshold || !time.Now().Before(deadline) {
			return busy
		}
	}
}

// clone copies a seeded template for one scenario: a fresh data dir
// (and database) per server.
func (r *runner) clone(ctx context.Context, name string, ds *dataset) (dir, dbURL string, err error) {
	r.clones++
	name = fmt.Sprintf("%s_%d", strings.ReplaceAll(name, "-", "_"), r.clones)
	dir = filepath.Join(r.tmp, name)
	if err := copyDir(ds.dir, dir); err != nil {
		return "", "", err
	}
	if r.pg != nil {
		if dbURL, err = r.pg.create(ctx, name, dbName(ds.db)); err != nil {
			return "", "", err
		}
	}
	return dir, dbURL, nil
}

// copyDir copies the regular files of src into a new folder dst.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
