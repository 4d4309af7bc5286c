package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/verityhq/verity/postgres"
)

// The pgbench ceilings answer the performance issue's PostgreSQL target:
// check throughput at least 60 % of pgbench's single-row-update rate at the
// same client count. pgbench (PostgreSQL's own C client) runs one UPDATE of
// one random row per transaction, with the server's default durable
// commits, like every check Verity acknowledges; then Verity's own check
// statement the same way, which shows how much of the gap is PostgreSQL's.

// pgbenchTarget is the share of pgbench's rate a check must reach, in %.
const pgbenchTarget = 60

// pgbenchTableSQL creates the table the pgbench script updates.
const pgbenchTableSQL = "CREATE TABLE bench_rows (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)"

// pgbenchScriptText is the custom script: one single-row update per
// transaction on rows 1..%d.
const pgbenchScriptText = "\\set id random(1, %d)\nUPDATE bench_rows SET n = n + 1 WHERE id = :id;\n"

// pgbenchWorkload is what one pgbench ceiling runs.
type pgbenchWorkload string

const (
	// pgbenchUpdate is the target's yardstick: one single-row UPDATE per
	// transaction.
	pgbenchUpdate pgbenchWorkload = "update"
	// pgbenchCheck is Verity's own statement for a PIN check
	// (postgres.DecidingCheckSQL), one per transaction, with a wrong code
	// on users with a pending PIN: PostgreSQL's cost for a check, without
	// Verity's process, HTTP or the load generator. A wrong code is the
	// heavier half of the check scenario: it locks the user, counts the
	// PIN's try and the user's failure (a right one consumes the PIN).
	pgbenchCheck pgbenchWorkload = "check"
)

// pgbenchCheckArgs stand in the check script for DecidingCheckSQL's
// parameters, arrays of one element, a check alone in its statement: a
// random seeded user, now, limits no run reaches (so every check writes),
// and a typed hash with the PINs' tag byte that matches none of them.
var pgbenchCheckArgs = map[string]string{
	"1": "ARRAY['u' || :id]",
	"2": "ARRAY['bench']",
	"3": "ARRAY[now() - interval '1 hour']",
	"4": "ARRAY[now()]",
	"5": "ARRAY[" + strconv.Itoa(unlimited) + "]",
	"6": "ARRAY[" + strconv.Itoa(unlimited) + "]",
	"7": "ARRAY[decode('02" + strings.Repeat("00", 32) + "', 'hex')]",
}

// sqlPlaceholder is a positional parameter: $ and digits.
var sqlPlaceholder = regexp.MustCompile(`\$[0-9]+`)

// pgbenchCheckScript is the check workload's script on users u1…u<rows>.
// A placeholder it has no stand-in for is left as it is, and pgbench then
// refuses the statement: the run reports that error rather than measuring
// another statement.
func pgbenchCheckScript(rows int) string {
	stmt := sqlPlaceholder.ReplaceAllStringFunc(postgres.DecidingCheckSQL(), func(p string) string {
		if arg, ok := pgbenchCheckArgs[p[1:]]; ok {
			return arg
		}
		return p
	})
	return fmt.Sprintf("\\set id random(1, %d)\n%s;\n", rows, strings.TrimSpace(stmt))
}

// pgbenchCheckSeed fills a migrated Verity database for the check
// workload: one service, and users u1…u<rows>, each with a pending PIN
// whose hash has the stored form's length and tag byte (33 bytes, the tag
// 2 of app.Keys.PINHash).
func pgbenchCheckSeed(rows int) []string {
	return []string{
		`INSERT INTO accounts (id, username, secret_hash, created_at) VALUES ('bench', 'bench', '\x00', now())`,
		`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES ('bench', 'bench', 'bench', 'bench.invalid', '{}', now())`,
		fmt.Sprintf(`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at)
			SELECT 'u' || i, 'bench', 'u' || i, '+3725555555', 'MOBILE', now() FROM generate_series(1, %d) i`, rows),
		fmt.Sprintf(`INSERT INTO pins (id, user_id, hash, created_at, expires_at)
			SELECT 'p' || i, 'u' || i, '\x02'::bytea || sha256(i::text::bytea), now(), now() + interval '1 day' FROM generate_series(1, %d) i`, rows),
		"VACUUM ANALYZE",
	}
}

// pgbenchResult is a pgbench ceiling in the JSON file.
type pgbenchResult struct {
	Workload         pgbenchWorkload `json:"workload"`
	Version          string          `json:"version,omitempty"`
	Rows             int             `json:"rows"`
	Clients          int             `json:"clients"`
	Threads          int             `json:"threads"`
	DurationSeconds  int             `json:"duration_seconds"`
	Command          string          `json:"command,omitempty"`
	Script           string          `json:"script,omitempty"`
	TPS              float64         `json:"tps"` // without the initial connection time
	LatencyAvgMs     float64         `json:"latency_avg_ms,omitempty"`
	Transactions     int             `json:"transactions"`
	Failed           int             `json:"failed_transactions"`
	PctStorage       float64         `json:"pct_of_storage_ceiling,omitempty"`
	PctPgbench       float64         `json:"pct_of_pgbench,omitempty"` // the check workload's share of the update's rate
	PostgresCPUPerTx float64         `json:"postgres_cpu_us_per_tx,omitempty"`
	PgbenchCPUPerTx  float64         `json:"pgbench_cpu_us_per_tx,omitempty"`
	OtherCPUCores    float64         `json:"other_cpu_cores"`
	Notes            []string        `json:"notes,omitempty"`
	Skipped          string          `json:"skipped,omitempty"`
	Error            string          `json:"error,omitempty"`
}

// markdownRow is a pgbench ceiling's row in the table: its rate, and its
// share of the storage ceiling as the HTTP ceiling's row has.
func (p *pgbenchResult) markdownRow() string {
	name := fmt.Sprintf("pgbench single-row update (%d clients)", p.Clients)
	if p.Workload == pgbenchCheck {
		name = fmt.Sprintf("pgbench running Verity's check statement (%d clients)", p.Clients)
	}
	switch {
	case p.Skipped != "":
		return fmt.Sprintf("| %s | skipped: %s | | | | | | | | | | | |\n", name, p.Skipped)
	case p.Error != "":
		return fmt.Sprintf("| %s | error: %s | | | | | | | | | | | |\n", name, firstLine(p.Error))
	}
	pctStorage := ""
	if p.PctStorage > 0 {
		pctStorage = fmt.Sprintf("%.0f%%", p.PctStorage)
	}
	return fmt.Sprintf("| %s | %s | | | %s | | | | | | | | %d |\n", name, num(p.TPS), pctStorage, p.Failed)
}

// markdownNote says what pgbench ran and what it cost, or why it did not run.
func (p *pgbenchResult) markdownNote() string {
	if p.Workload == pgbenchCheck {
		return p.checkNote()
	}
	switch {
	case p.Skipped != "":
		return fmt.Sprintf("- pgbench ceiling skipped: %s, so no row is compared with pgbench's single-row-update rate in this run\n", p.Skipped)
	case p.Error != "":
		return fmt.Sprintf("- pgbench ceiling failed: %s\n", firstLine(p.Error))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- pgbench ceiling (%s, %d rows, %d clients, %d threads, %d s): `%s` with the script `%s`, default synchronous_commit: "+
		"%s tps without the initial connection time", p.Version, p.Rows, p.Clients, p.Threads, p.DurationSeconds,
		p.Command, strings.ReplaceAll(strings.TrimSpace(p.Script), "\n", " "), num(p.TPS))
	if p.LatencyAvgMs > 0 {
		fmt.Fprintf(&b, ", latency average %.2f ms", p.LatencyAvgMs)
	}
	b.WriteString(", " + p.costs())
	return b.String()
}

// costs ends a note: the transactions, what they cost, and the run's notes.
func (p *pgbenchResult) costs() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s transactions (%d failed); PostgreSQL %.0f µs CPU/tx, pgbench %.0f µs CPU/tx; other processes kept %.2f cores busy.",
		num(float64(p.Transactions)), p.Failed, p.PostgresCPUPerTx, p.PgbenchCPUPerTx, p.OtherCPUCores)
	for _, n := range p.Notes {
		fmt.Fprintf(&b, " %s.", n)
	}
	b.WriteString("\n")
	return b.String()
}

// checkNote says what the check workload ran and what share of the
// update's rate it reached. Its script, a long statement, is in the JSON.
func (p *pgbenchResult) checkNote() string {
	const what = "pgbench running Verity's check statement"
	switch {
	case p.Skipped != "":
		return fmt.Sprintf("- %s skipped: %s\n", what, p.Skipped)
	case p.Error != "":
		return fmt.Sprintf("- %s failed: %s\n", what, firstLine(p.Error))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "- %s (the one statement a PIN check runs, with a wrong code: it locks the user, counts the PIN's try and the user's failure; "+
		"%d users with a pending PIN, %d clients, %d threads, %d s, `-M prepared`, its script in the JSON; its share of the storage ceiling compares wrong codes alone with the ceiling's mix of wrong and right): %s tps", what,
		p.Rows, p.Clients, p.Threads, p.DurationSeconds, num(p.TPS))
	if p.PctPgbench > 0 {
		fmt.Fprintf(&b, " = %.0f %% of the single-row update's rate: what wrong-code checks could reach against that target if Verity, HTTP and the load generator cost nothing (a right code only consumes the PIN, one row)", p.PctPgbench)
	}
	b.WriteString("; " + p.costs())
	return b.String()
}

// pgbenchShareLine compares one row's peak with pgbench's rate; the
// issue's target applies to checks, by PIN (check) or authenticator (totp).
// Those rows also have pgbench run right after them, and the verdict is
// taken against that run, measured at the row's moment, as the HTTP ceiling
// next to a row is: pgbench's rate moved by a third between runs minutes
// apart. pool is the connections Verity had to PostgreSQL (0: its default).
func pgbenchShareLine(s scenarioResult, clients, pool int) string {
	conns := "Verity on its default pool of 4 × GOMAXPROCS connections"
	if pool > 0 {
		conns = fmt.Sprintf("Verity on %d connections", pool)
	}
	line := fmt.Sprintf("- %s = %.0f %% of pgbench's single-row-update rate at %d clients", s.Name, *s.PctPgbench, clients)
	judged := *s.PctPgbench
	if next := s.PctAdjacentPgbench; next != nil {
		line += fmt.Sprintf(", %.0f %% of its run next to the row (%s tps)", *next, num(s.AdjacentPgbench.TPS))
		judged = *next
	}
	line += ", " + conns
	if s.Name == "check" || s.Name == "totp" {
		verdict := "not met"
		if judged >= pgbenchTarget {
			verdict = "met"
		}
		line += fmt.Sprintf(" (target ≥ %d %%: %s)", pgbenchTarget, verdict)
	}
	return line + "\n"
}

// measureAdjacentPgbench runs pgbench's single-row update again right
// after a check or totp row (see pgbenchShareLine). It is nil when pgbench
// did not run at the start of the run.
func (r *runner) measureAdjacentPgbench(ctx context.Context, row string) (*pgbenchResult, error) {
	if row != "check" && row != "totp" {
		return nil, nil
	}
	for _, c := range r.pgbench {
		if c.workload == pgbenchUpdate {
			logf("  pgbench's single-row update next to it")
			res, err := r.runPgbench(ctx, c)
			if err != nil {
				return nil, err
			}
			return &res, nil
		}
	}
	return nil, nil
}

// pgbenchFigures are the lines of pgbench's summary the benchmark uses.
type pgbenchFigures struct {
	tps          float64 // without the initial connection time
	latencyAvgMs float64 // 0 when pgbench printed no average
	transactions int
	failed       int // PostgreSQL 15+ prints it; 0 otherwise
}

var (
	// PostgreSQL 14+ prints "(without initial connection time)"; older
	// versions print an "including" line, then this "excluding" one.
	pgbenchTPSLine       = regexp.MustCompile(`(?m)^tps = ([0-9]+(?:\.[0-9]+)?) \((?:without initial connection time|excluding connections establishing)\)`)
	pgbenchLatencyLine   = regexp.MustCompile(`(?m)^latency average = ([0-9]+(?:\.[0-9]+)?) ms`)
	pgbenchProcessedLine = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	pgbenchFailedLine    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// parsePgbenchOutput reads pgbench's summary. Only the tps line is
// required.
func parsePgbenchOutput(out string) (pgbenchFigures, error) {
	var f pgbenchFigures
	m := pgbenchTPSLine.FindStringSubmatch(out)
	if m == nil {
		return f, fmt.Errorf("no \"tps = … (without initial connection time)\" line in pgbench's output")
	}
	var err error
	if f.tps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return f, fmt.Errorf("pgbench tps %q: %w", m[1], err)
	}
	if m := pgbenchLatencyLine.FindStringSubmatch(out); m != nil {
		if f.latencyAvgMs, err = strconv.ParseFloat(m[1], 64); err != nil {
			return f, fmt.Errorf("pgbench latency average %q: %w", m[1], err)
		}
	}
	if m := pgbenchProcessedLine.FindStringSubmatch(out); m != nil {
		if f.transactions, err = strconv.Atoi(m[1]); err != nil {
			return f, fmt.Errorf("pgbench transactions %q: %w", m[1], err)
		}
	}
	if m := pgbenchFailedLine.FindStringSubmatch(out); m != nil {
		if f.failed, err = strconv.Atoi(m[1]); err != nil {
			return f, fmt.Errorf("pgbench failed transactions %q: %w", m[1], err)
		}
	}
	return f, nil
}

// pgbenchCeiling is one pgbench workload: its settings, and once prepared
// its database and script file.
type pgbenchCeiling struct {
	workload pgbenchWorkload
	bin      string
	rows     int
	clients  int
	threads  int
	seconds  int
	dbURL    string // a throwaway database made by pgAdmin
	script   string // path of the script file
	version  string
}

// newPgbenchCeiling sets up a pgbench run like the closed loop: as many
// clients as its connections and its length in whole seconds (pgbench's -T
// takes no fraction), on as many rows as the check scenario's pool.
func newPgbenchCeiling(bin string, workload pgbenchWorkload, rows, clients int, closed time.Duration) *pgbenchCeiling {
	return &pgbenchCeiling{workload: workload, bin: bin, rows: rows, clients: clients,
		threads: max(1, min(clients, runtime.NumCPU())), seconds: max(1, int(math.Round(closed.Seconds())))}
}

// prepare creates the database (through pg, so that it is dropped with the
// others), fills it (the update's table, or Verity's schema and users for
// the check) and writes the script file into dir.
func (c *pgbenchCeiling) prepare(ctx context.Context, pg *pgAdmin, dir string) error {
	if out, err := exec.CommandContext(ctx, c.bin, "--version").Output(); err == nil {
		c.version = strings.TrimSpace(string(out))
	}
	dbURL, err := pg.create(ctx, "pgbench_"+string(c.workload), "")
	if err != nil {
		return fmt.Errorf("pgbench database: %w", err)
	}
	// VACUUM ANALYZE after loading, as `pgbench -i` does for its own tables.
	if c.workload == pgbenchCheck {
		store, err := openStore(ctx, dbURL, "") // Verity's schema, by its own migrations
		if err != nil {
			return fmt.Errorf("pgbench check database: %w", err)
		}
		store.Close()
		if err := execDB(ctx, dbURL, pgbenchCheckSeed(c.rows)...); err != nil {
			return fmt.Errorf("pgbench check users: %w", err)
		}
	} else if err := execDB(ctx, dbURL, pgbenchTableSQL,
		fmt.Sprintf("INSERT INTO bench_rows (id) SELECT generate_series(1, %d)", c.rows),
		"VACUUM ANALYZE bench_rows"); err != nil {
		return fmt.Errorf("pgbench table: %w", err)
	}
	script := filepath.Join(dir, "pgbench-"+string(c.workload)+".sql")
	if err := os.WriteFile(script, []byte(c.scriptText()), 0o600); err != nil {
		return fmt.Errorf("pgbench script: %w", err)
	}
	c.dbURL, c.script = dbURL, script
	return nil
}

func (c *pgbenchCeiling) scriptText() string {
	if c.workload == pgbenchCheck {
		return pgbenchCheckScript(c.rows)
	}
	return fmt.Sprintf(pgbenchScriptText, c.rows)
}

// args are pgbench's arguments: no vacuum of the (absent) pgbench_* tables,
// prepared statements, the custom script, and the database URL as dbname.
func (c *pgbenchCeiling) args(dbURL string) []string {
	return []string{"-n", "-M", "prepared", "-c", strconv.Itoa(c.clients), "-j", strconv.Itoa(c.threads),
		"-T", strconv.Itoa(c.seconds), "-f", c.script, dbURL}
}

// result is the run's settings, before any figure.
func (c *pgbenchCeiling) result() pgbenchResult {
	res := pgbenchResult{Workload: c.workload, Version: c.version, Rows: c.rows, Clients: c.clients, Threads: c.threads, DurationSeconds: c.seconds}
	if c.script != "" {
		res.Script = c.scriptText()
		res.Command = "pgbench " + strings.Join(c.args(redactURL(c.dbURL)), " ")
	}
	return res
}

// run runs pgbench once and meters the CPU of PostgreSQL, of pgbench and
// of the rest of the machine meanwhile.
func (c *pgbenchCeiling) run(ctx context.Context) (pgbenchResult, error) {
	res := c.result()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.seconds)*time.Second+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, c.args(c.dbURL)...)
	// Its own process group, as the servers: a Ctrl-C reaches only the
	// benchmark, which then ends pgbench through ctx.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "LC_ALL=C") // the summary lines in English, with decimal points
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	db, machine := &groupMeter{comm: "postgres"}, machineMeter()
	db.begin()
	machine.begin()
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	db.end()
	machine.end()
	if err != nil {
		return res, fmt.Errorf("%s: %w: %s", res.Command, err, lastLines(out.String(), 5))
	}
	f, err := parsePgbenchOutput(out.String())
	if err != nil {
		return res, fmt.Errorf("%w: %s", err, lastLines(out.String(), 5))
	}
	if f.tps <= 0 || f.transactions == 0 {
		return res, fmt.Errorf("pgbench processed no transaction: %s", lastLines(out.String(), 5))
	}
	res.TPS, res.LatencyAvgMs, res.Transactions, res.Failed = f.tps, f.latencyAvgMs, f.transactions, f.failed
	pgbenchCPU := float64(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()) / float64(time.Microsecond)
	res.PostgresCPUPerTx = ratio(db.micros(), float64(f.transactions))
	res.PgbenchCPUPerTx = ratio(pgbenchCPU, float64(f.transactions))
	res.OtherCPUCores = max(0, machine.micros()-db.micros()-pgbenchCPU) / 1e6 / wall.Seconds()
	return res, nil
}

// redactURL hides a password in a database URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<database URL>"
	}
	return u.Redacted()
}

// lastLines returns the last n non-empty lines of s, joined by " / ".
func lastLines(s string, n int) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	lines = lines[max(0, len(lines)-n):]
	return strings.Join(lines, " / ")
}

// measurePgbenchCeiling measures the pgbench ceilings (PostgreSQL only):
// the single-row update, then Verity's check statement. Only cancellation
// stops the run: a missing pgbench or a failed measurement becomes a row
// that says why.
func (r *runner) measurePgbenchCeiling(ctx context.Context) error {
	bin, lookErr := exec.LookPath("pgbench")
	for _, workload := range []pgbenchWorkload{pgbenchUpdate, pgbenchCheck} {
		c := newPgbenchCeiling(bin, workload, r.cfg.pool, r.cfg.conns, r.cfg.closedDur)
		slot := r.results.pgbenchSlot(workload)
		if lookErr != nil {
			res := c.result()
			res.Skipped = "pgbench is not installed (not found in PATH)"
			*slot = &res
			logf("pgbench %s ceiling skipped: %s: %v", workload, res.Skipped, lookErr)
			continue
		}
		logf("pgbench %s ceiling (%d rows, %d clients, %d threads, %d s)", workload, c.rows, c.clients, c.threads, c.seconds)
		err := c.prepare(ctx, r.pg, r.tmp)
		res := c.result()
		if err == nil {
			res, err = r.runPgbench(ctx, c)
			r.pgbench = append(r.pgbench, c)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res.Error = err.Error()
			logf("pgbench %s ceiling failed: %v", workload, err)
		}
		*slot = &res
	}
	return nil
}

// runPgbench runs c under the same conditions as a scenario: dirty pages
// written out and the CPUs as idle as -quiet allows.
func (r *runner) runPgbench(ctx context.Context, c *pgbenchCeiling) (pgbenchResult, error) {
	syscall.Sync()
	busy := waitQuiet(ctx, r.cfg.quietWait)
	res, err := c.run(ctx)
	if busy >= quietThreshold {
		res.Notes = append(res.Notes, fmt.Sprintf("the machine was still %.2f cores busy with other work when this started", busy))
	}
	return res, err
}

// remeasureNoisyPgbench runs each pgbench ceiling again when other
// processes disturbed its first run, and keeps the quieter one.
func (r *runner) remeasureNoisyPgbench(ctx context.Context) error {
	for _, c := range r.pgbench {
		slot := r.results.pgbenchSlot(c.workload)
		first := *slot
		if first == nil || first.Error != "" || first.OtherCPUCores < noisy {
			continue
		}
		logf("pgbench %s ceiling again: other processes kept %.2f cores busy during it", c.workload, first.OtherCPUCores)
		second, err := r.runPgbench(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			first.Notes = append(first.Notes, "measured again because other processes kept the CPUs busy, but the second run failed: "+firstLine(err.Error()))
			continue
		}
		kept, other := &second, first
		if first.OtherCPUCores <= second.OtherCPUCores {
			kept, other = first, &second
		}
		kept.Notes = append(kept.Notes, fmt.Sprintf("measured twice because other processes kept the CPUs busy; "+
			"kept the quieter run (%.2f cores of other work), the other gave %s tps", kept.OtherCPUCores, num(other.TPS)))
		*slot = kept
	}
	return nil
}
