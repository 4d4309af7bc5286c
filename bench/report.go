package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// phaseJSON is one phase of a scenario in the JSON file.
type phaseJSON struct {
	Ops            int            `json:"ops"`
	OK             int            `json:"ok"`
	Errors         int            `json:"errors"`
	Seconds        float64        `json:"seconds"`
	OpsPerSec      float64        `json:"ok_per_sec"`
	TargetRate     float64        `json:"target_rate,omitempty"`
	Segments       int            `json:"segments"`
	Latency        latencySummary `json:"latency"`
	SendLag        latencySummary `json:"send_lag,omitzero"` // open loop: how late the generator sent
	Failures       map[string]int `json:"failures,omitempty"`
	OKByKind       map[string]int `json:"ok_by_kind,omitempty"`
	ServerCPUPerOp float64        `json:"server_cpu_us_per_op"`
	BenchCPUPerOp  float64        `json:"bench_cpu_us_per_op"`
	DBCPUPerOp     float64        `json:"postgres_cpu_us_per_op,omitempty"`
	// OtherCPUCores is how busy everything else on the machine kept the
	// CPUs meanwhile, in cores: background noise in the result.
	OtherCPUCores float64 `json:"other_cpu_cores"`
	// Stalls is what the stall probe saw meanwhile (see stall.go); nil
	// when it did not run.
	Stalls *stallSummary `json:"machine_stalls,omitempty"`
}

func newPhaseJSON(p phaseResult, rate float64) phaseJSON {
	return phaseJSON{
		Ops: p.ops, OK: p.ok, Errors: p.ops - p.ok, Seconds: p.elapsed.Seconds(), OpsPerSec: p.throughput(),
		TargetRate: rate, Segments: p.segments, Latency: summarize(p.latencies), SendLag: summarize(p.lags),
		Failures: p.failures, OKByKind: p.labels,
		ServerCPUPerOp: ratio(p.cpuMicros, float64(p.ops)), BenchCPUPerOp: ratio(p.selfCPU, float64(p.ops)),
		DBCPUPerOp:    ratio(p.dbCPU, float64(p.ops)),
		OtherCPUCores: ratio(p.otherCPU/1e6, p.elapsed.Seconds()),
		Stalls:        stallsOrNil(p.stalls),
	}
}

// stallsOrNil is s, or nil when the probe did not cover the phase.
func stallsOrNil(s stallSummary) *stallSummary {
	if s.Seconds == 0 {
		return nil
	}
	return &s
}

// scenarioResult is one row of the table.
type scenarioResult struct {
	Name          string    `json:"name"`
	Description   string    `json:"description,omitempty"`
	Skipped       string    `json:"skipped,omitempty"`
	Error         string    `json:"error,omitempty"`
	Peak          float64   `json:"peak_ops_per_sec"`
	UsersPerSec   float64   `json:"users_per_sec,omitempty"`
	PctHTTP       float64   `json:"pct_of_http_ceiling"`
	PctStorage    float64   `json:"pct_of_storage_ceiling"`
	PctPgbench    *float64  `json:"pct_of_pgbench,omitempty"` // PostgreSQL, when pgbench ran
	Closed        phaseJSON `json:"closed_loop"`
	Open          phaseJSON `json:"open_loop"`
	CPUPerOp      float64   `json:"server_cpu_us_per_op"`
	BenchCPUPerOp float64   `json:"bench_cpu_us_per_op"`
	DBCPUPerOp    float64   `json:"postgres_cpu_us_per_op,omitempty"`
	PeakRSSMB     float64   `json:"server_peak_rss_mb"`
	// LatencyFloor is the HTTP ceiling server driven at this row's
	// open-loop rate: the latency of doing nothing at the same load.
	LatencyFloor *phaseJSON `json:"latency_floor,omitempty"`
	// AdjacentCeiling is the HTTP ceiling's closed loop measured right
	// after this row, and PctAdjacent the row's peak as a share of it.
	AdjacentCeiling *phaseJSON `json:"adjacent_http_ceiling,omitempty"`
	PctAdjacent     float64    `json:"pct_of_adjacent_http_ceiling,omitempty"`
	// AdjacentPgbench is pgbench's single-row update run again right
	// after this row (PostgreSQL; the check and totp rows, whose target it
	// is), and PctAdjacentPgbench the row's peak as a share of it.
	AdjacentPgbench    *pgbenchResult `json:"adjacent_pgbench,omitempty"`
	PctAdjacentPgbench *float64       `json:"pct_of_adjacent_pgbench,omitempty"`
	Notes              []string       `json:"notes,omitempty"`
}

func newScenarioResult(name, description string, m measurement, rss int64) scenarioResult {
	return scenarioResult{
		Name: name, Description: description, Peak: m.closed.throughput(),
		Closed: newPhaseJSON(m.closed, 0), Open: newPhaseJSON(m.open, m.openRate),
		CPUPerOp: m.cpuPerOp, BenchCPUPerOp: m.selfPerOp, DBCPUPerOp: m.dbPerOp, PeakRSSMB: float64(rss) / (1 << 20),
	}
}

// seedInfo describes how the template data was made.
type seedInfo struct {
	Users       int     `json:"users"`
	Method      string  `json:"method"`
	Seconds     float64 `json:"seconds"`
	UsersPerSec float64 `json:"users_per_sec"`
	Error       string  `json:"error,omitempty"`
}

// machineInfo describes where the run happened.
type machineInfo struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit,omitempty"`
}

// results is the whole JSON file.
type results struct {
	Date         string           `json:"date"`
	Command      string           `json:"command"`
	Backend      string           `json:"backend"`
	Config       map[string]any   `json:"config"`
	Machine      machineInfo      `json:"machine"`
	Seed         seedInfo         `json:"seed"`
	HTTPCeiling  *scenarioResult  `json:"http_ceiling"`
	Storage      *storageResult   `json:"storage_ceiling"`
	Pgbench      *pgbenchResult   `json:"pgbench,omitempty"`       // PostgreSQL only: the single-row update
	PgbenchCheck *pgbenchResult   `json:"pgbench_check,omitempty"` // PostgreSQL only: Verity's check statement
	Scenarios    []scenarioResult `json:"scenarios"`
	Comparison   *usersComparison `json:"users_comparison,omitempty"` // -compare-users
}

func newResults(cfg *config) results {
	r := results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: "go run ./bench " + strings.Join(os.Args[1:], " "),
		Backend: cfg.db,
		Config: map[string]any{
			"users": cfg.users, "compare_users": cfg.compareUsers, "scenarios": cfg.scenarios, "connections": cfg.conns,
			"closed_seconds": cfg.closedDur.Seconds(), "open_seconds": cfg.openDur.Seconds(),
			"open_fraction": cfg.openFraction, "storage_seconds": cfg.storageDur.Seconds(),
			"pool": cfg.pool, "wrong": cfg.wrong, "totp_users": cfg.totpUsers, "open_conns": cfg.openConns,
			"quiet_wait_seconds": cfg.quietWait.Seconds(), "retry_noisy": cfg.retryNoisy, "pg_pool": cfg.pgPool,
			"settings": benchSettings,
		},
		Machine:   readMachine(),
		Scenarios: []scenarioResult{},
	}
	if cfg.db == "sqlite" { // PostgreSQL runs ignore -sqlite-sync: their JSON does not claim one
		r.Config["sqlite_sync"] = cfg.sqliteSync
	}
	return r
}

// pgbenchSlot is where the result of a pgbench workload goes.
func (r *results) pgbenchSlot(w pgbenchWorkload) **pgbenchResult {
	if w == pgbenchCheck {
		return &r.PgbenchCheck
	}
	return &r.Pgbench
}

// add appends a row.
func (r *results) add(s scenarioResult) { r.Scenarios = append(r.Scenarios, s) }

// finish computes every row's share of the ceilings.
func (r *results) finish() {
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if r.HTTPCeiling != nil {
			s.PctHTTP = 100 * ratio(s.Peak, r.HTTPCeiling.Peak)
		}
		if r.Storage != nil {
			s.PctStorage = 100 * ratio(s.Peak, r.Storage.CheckPIN.OpsPerSec)
		}
		if s.AdjacentCeiling != nil {
			s.PctAdjacent = 100 * ratio(s.Peak, s.AdjacentCeiling.OpsPerSec)
		}
		if pb := s.AdjacentPgbench; pb != nil && pb.TPS > 0 && s.Peak > 0 {
			pct := 100 * s.Peak / pb.TPS
			s.PctAdjacentPgbench = &pct
		}
	}
	if r.HTTPCeiling != nil && r.Storage != nil {
		r.HTTPCeiling.PctHTTP = 100
		r.HTTPCeiling.PctStorage = 100 * ratio(r.HTTPCeiling.Peak, r.Storage.CheckPIN.OpsPerSec)
	}
	if pb := r.Pgbench; pb != nil && pb.TPS > 0 {
		for i := range r.Scenarios {
			if s := &r.Scenarios[i]; s.Peak > 0 {
				pct := 100 * s.Peak / pb.TPS
				s.PctPgbench = &pct
			}
		}
		if r.Storage != nil {
			pb.PctStorage = 100 * ratio(pb.TPS, r.Storage.CheckPIN.OpsPerSec)
		}
		if pc := r.PgbenchCheck; pc != nil && pc.TPS > 0 {
			pc.PctPgbench = 100 * pc.TPS / pb.TPS
		}
	}
	if pc := r.PgbenchCheck; pc != nil && pc.TPS > 0 && r.Storage != nil {
		pc.PctStorage = 100 * ratio(pc.TPS, r.Storage.CheckPIN.OpsPerSec)
	}
}

// write saves the JSON file.
func (r *results) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// markdown renders the table and its notes.
func (r *results) markdown() string {
	var b strings.Builder
	backend := r.Backend
	if sync, ok := r.Config["sqlite_sync"]; ok && backend == "sqlite" {
		backend = fmt.Sprintf("sqlite (--sqlite-sync %s)", sync)
	}
	fmt.Fprintf(&b, "\n### Verity benchmark, %s: %s, %d users, %d connections\n\n", r.Date, backend, r.Seed.Users, r.Config["connections"])
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s RAM, Linux %s, %s. Command: `%s`.\n\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.GoVersion, r.Command)
	b.WriteString("| scenario | peak ops/s | % of HTTP ceiling | % of HTTP ceiling next to it | % of storage ceiling | p50 ms | p90 ms | p99 ms | p99.9 ms | floor p99 ms | CPU µs/op at peak · half | peak RSS MB | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rows := slices.Clone(r.Scenarios)
	if r.HTTPCeiling != nil {
		rows = append(rows, *r.HTTPCeiling)
	}
	for _, s := range rows {
		if s.Skipped != "" || (s.Error != "" && s.Closed.Ops == 0) {
			why := s.Skipped
			if why == "" {
				why = "error: " + firstLine(s.Error)
			}
			fmt.Fprintf(&b, "| %s | %s | | | | | | | | | | | |\n", s.Name, why)
			continue
		}
		name := s.Name
		if s.UsersPerSec > 0 && s.UsersPerSec != s.Peak {
			name += fmt.Sprintf(" (%s users/s)", num(s.UsersPerSec))
		}
		l := s.Open.Latency
		floor := ""
		if s.LatencyFloor != nil {
			floor = fmt.Sprintf("%.2f", s.LatencyFloor.Latency.P99)
		}
		adjacent := ""
		if s.PctAdjacent > 0 {
			adjacent = fmt.Sprintf("%.0f%%", s.PctAdjacent)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f%% | %s | %.0f%% | %.2f | %.2f | %.2f | %.2f | %s | %.0f · %.0f | %.0f | %d |\n",
			name, num(s.Peak), s.PctHTTP, adjacent, s.PctStorage, l.P50, l.P90, l.P99, l.P999, floor,
			s.Closed.ServerCPUPerOp, s.Open.ServerCPUPerOp, s.PeakRSSMB, s.Closed.Errors+s.Open.Errors)
	}
	if st := r.Storage; st != nil {
		l := st.CheckPIN.Latency
		fmt.Fprintf(&b, "| storage ceiling (%s, in-process, closed loop) | %s | | | 100%% | %.2f | %.2f | %.2f | %.2f | | | | %d |\n",
			st.Backend, num(st.CheckPIN.OpsPerSec), l.P50, l.P90, l.P99, l.P999, st.CheckPIN.Errors)
	}
	for _, pb := range []*pgbenchResult{r.Pgbench, r.PgbenchCheck} {
		if pb != nil {
			b.WriteString(pb.markdownRow())
		}
	}
	b.WriteString("\nLatencies are from the open loop at " + fmt.Sprint(r.Config["open_fraction"]) +
		" × each row's peak, measured from each request's scheduled send time; the storage row's are per store call under the closed loop. " +
		"Floor p99 is the HTTP ceiling server's p99 when driven the same way at the same rate, right after the row: the latency of a server that does nothing, on this machine, with the generator beside it. " +
		"CPU µs/op is the server process's user+system time divided by the requests, at peak (the closed loop) and at half of it (the open loop), where fewer requests share each wake-up and each commit. " +
		"The HTTP ceiling next to a row is its closed loop measured again right after that row (at most 3 s): this machine's speed can drift by tens of percent within minutes, and the ceiling measured next to a row drifted with it. " +
		"Machine stalls (in each row's note) are the time in which the machine ran nothing that was ready to run, as a process of the benchmark's own that sleeps 1 ms at a time saw it: lost time that falls at one point of every 100 ms cycle is the machine's host pausing it, and no latency measured then can be shorter.\n\n")
	if st := r.Storage; st != nil {
		how := "read, judge and write in the writer's transaction"
		if st.Backend == "postgres" {
			how = "one statement that reads, compares the hashes and writes"
		}
		fmt.Fprintf(&b, "- storage ceiling (%s, %d users, %d workers): the check mix as checks make it, one CheckPIN each with the typed code's hash (%s) %s/s; "+
			"its writes alone: ConsumePIN %s/s, CountFailedTry %s/s, the mix %s/s; the mix as a separate read (UserWithPIN), then the write %s/s; "+
			"4 KiB write + fsync in the data folder p50 %.2f ms, p99 %.2f ms%s\n",
			st.Backend, st.Users, st.Concurrency, how, num(st.CheckPIN.OpsPerSec), num(st.Consume.OpsPerSec), num(st.FailedTry.OpsPerSec),
			num(st.CheckMix.OpsPerSec), num(st.FullCheck.OpsPerSec), st.Fsync.P50, st.Fsync.P99, noteSuffix(st.Note))
	}
	if pb := r.Pgbench; pb != nil {
		b.WriteString(pb.markdownNote())
		pool, _ := r.Config["pg_pool"].(int)
		for _, s := range r.Scenarios {
			if s.PctPgbench != nil {
				b.WriteString(pgbenchShareLine(s, pb.Clients, pool))
			}
		}
	}
	if pc := r.PgbenchCheck; pc != nil {
		b.WriteString(pc.markdownNote())
	}
	fmt.Fprintf(&b, "- seed: %d users in %.1f s via %s%s\n", r.Seed.Users, r.Seed.Seconds, r.Seed.Method, noteSuffix(r.Seed.Error))
	for _, s := range rows {
		if s.Description == "" {
			continue
		}
		fmt.Fprintf(&b, "- **%s**: %s.", s.Name, s.Description)
		if len(s.Open.OKByKind) > 0 || len(s.Closed.OKByKind) > 0 {
			fmt.Fprintf(&b, " Answered as expected, closed loop %s, open loop %s.", kinds(s.Closed.OKByKind), kinds(s.Open.OKByKind))
		}
		fmt.Fprintf(&b, " Open loop %s/s of %s/s targeted, generator send lag p99 %.2f ms.", num(s.Open.OpsPerSec), num(s.Open.TargetRate), s.Open.SendLag.P99)
		b.WriteString(stallNote(s))
		fmt.Fprintf(&b, " Load generator %.0f µs CPU/op", s.BenchCPUPerOp)
		if s.DBCPUPerOp > 0 {
			fmt.Fprintf(&b, ", PostgreSQL %.0f µs CPU/op", s.DBCPUPerOp)
		}
		fmt.Fprintf(&b, "; other processes kept %.2f / %.2f cores busy (closed / open loop).", s.Closed.OtherCPUCores, s.Open.OtherCPUCores)
		if a := s.AdjacentCeiling; a != nil {
			fmt.Fprintf(&b, " The HTTP ceiling right after it: %s/s at %.0f µs of server CPU per request, other processes %.2f cores", num(a.OpsPerSec), a.ServerCPUPerOp, a.OtherCPUCores)
			if a.Errors > 0 {
				fmt.Fprintf(&b, ", %d requests not answered as expected (%s)", a.Errors, kinds(a.Failures))
			}
			b.WriteString(".")
		}
		for _, f := range []map[string]int{s.Closed.Failures, s.Open.Failures} {
			if len(f) > 0 {
				fmt.Fprintf(&b, " Failures: %s.", kinds(f))
			}
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, " %s.", n)
		}
		if s.Error != "" {
			fmt.Fprintf(&b, " Error: %s.", firstLine(s.Error))
		}
		b.WriteString("\n")
	}
	if r.Comparison != nil {
		b.WriteString(r.Comparison.markdown(r.Config["open_fraction"]))
	}
	return b.String()
}

// kinds renders a count map as "a 10, b 3" in key order.
func kinds(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func noteSuffix(note string) string {
	if note == "" {
		return ""
	}
	return " (" + firstLine(note) + ")"
}

// num renders a rate with thousands separators and no decimals.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// readMachine describes this machine from /proc and the toolchain.
func readMachine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
