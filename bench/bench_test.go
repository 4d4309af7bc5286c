package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity/totp"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 500 * time.Millisecond},
		{90, 900 * time.Millisecond},
		{99, 990 * time.Millisecond},
		{99.9, 999 * time.Millisecond},
		{100, 1000 * time.Millisecond},
		{0.01, time.Millisecond},
	} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("percentile(1..1000 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(empty) = %v, want 0", got)
	}
	if got, want := percentile([]time.Duration{7}, 99.9), time.Duration(7); got != want {
		t.Errorf("percentile(one sample) = %v, want %v", got, want)
	}
}

func TestSummarizeSortsAndReportsMilliseconds(t *testing.T) {
	s := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond})
	if s.Count != 4 || s.P50 != 2 || s.Max != 4 || s.Mean != 2.5 || s.P99 != 4 {
		t.Fatalf("summarize = %+v, want count 4, p50 2, p99 4, max 4, mean 2.5", s)
	}
}

func TestOpenLoopScheduleDoesNotDrift(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	if got, want := slotCount(2000, 5*time.Second), 10000; got != want {
		t.Fatalf("slotCount(2000/s, 5s) = %d, want %d", got, want)
	}
	if got, want := slotCount(3, 1500*time.Millisecond), 5; got != want { // 4.5 rounds to 5
		t.Fatalf("slotCount(3/s, 1.5s) = %d, want %d", got, want)
	}
	if got := slotCount(0, time.Second); got != 0 {
		t.Fatalf("slotCount(0/s) = %d, want 0", got)
	}
	// A rate whose interval is not a whole number of nanoseconds: slot n
	// must still land on n/rate, not on n times a rounded interval.
	rate := 3000.0
	if got, want := slotTime(start, 3_000_000, rate), start.Add(1000*time.Second); got.Sub(want).Abs() > time.Microsecond {
		t.Fatalf("slot 3,000,000 at 3000/s is due at +%v, want +1000s", got.Sub(start))
	}
	prev := start
	for k := 1; k < 10000; k++ {
		at := slotTime(start, k, rate)
		if !at.After(prev) {
			t.Fatalf("slot %d (%v) is not after slot %d (%v)", k, at, k-1, prev)
		}
		prev = at
	}
}

func TestPINFromTextTakesTheLastRunOfDigits(t *testing.T) {
	for _, tc := range []struct {
		text, want string
		ok         bool
	}{
		{"Your Bench code is 123456", "123456", true},
		{"Your Shop 2000 code is 0042", "0042", true},
		{"1234567890", "1234567890", true},
		{"Code 98765. Valid 5 min", "98765", true},
		{"no code here", "", false},
		{"only 123", "", false},
	} {
		got, ok := pinFromText(tc.text)
		if got != tc.want || ok != tc.ok {
			t.Errorf("pinFromText(%q) = %q, %v; want %q, %v", tc.text, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWrongCodeDiffersInEveryDigit(t *testing.T) {
	for _, code := range []string{"000000", "123456", "999999", "0042"} {
		w := wrongCode(code)
		if len(w) != len(code) {
			t.Fatalf("wrongCode(%q) = %q: length changed", code, w)
		}
		for i := range code {
			if w[i] == code[i] {
				t.Fatalf("wrongCode(%q) = %q: digit %d unchanged", code, w, i)
			}
		}
	}
}

func TestParseProcFiles(t *testing.T) {
	stat := []byte("4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 25 0 0 20 0 9 0 100 0 0\n")
	if got, err := parseStatCPU(stat); err != nil || got != 175 {
		t.Fatalf("parseStatCPU = %d, %v; want 175 (utime 150 + stime 25)", got, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("parseStatCPU(garbage) succeeded")
	}
	postmaster := []byte("77 (postgres) S 1 77 77 0 -1 4194560 1234 0 0 0 40 10 900 300 20 0 1 0 100 0 0\n")
	if self, children, err := parseStatTimes(postmaster); err != nil || self != 50 || children != 1200 {
		t.Fatalf("parseStatTimes = %d, %d, %v; want 50 (utime + stime) and 1200 (cutime + cstime)", self, children, err)
	}
	status := []byte("Name:\tverity\nVmPeak:\t  900 kB\nVmHWM:\t   35840 kB\nVmRSS:\t 30000 kB\n")
	if got, err := parseVmHWM(status); err != nil || got != 35840<<10 {
		t.Fatalf("parseVmHWM = %d, %v; want %d", got, err, 35840<<10)
	}
	procStat := []byte("cpu  100 5 50 1000 70 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if got, err := parseProcStatBusy(procStat); err != nil || got != 161 {
		t.Fatalf("parseProcStatBusy = %d, %v; want 161 (all but idle and iowait)", got, err)
	}
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name, raw, body string
		status          int
		keep            bool
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", `{"ok":true}`, 200, true},
		{"chunked", "HTTP/1.1 422 Unprocessable Entity\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n", `{"a":1}`, 422, true},
		{"connection close", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", "{}", 503, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", 204, true},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, keep, err := readResponse(bufio.NewReader(strings.NewReader(tc.raw)))
			if err != nil || status != tc.status || string(body) != tc.body || keep != tc.keep {
				t.Fatalf("readResponse = %d, %q, keep %v, %v; want %d, %q, keep %v", status, body, keep, err, tc.status, tc.body, tc.keep)
			}
		})
	}
	if _, _, _, err := readResponse(bufio.NewReader(strings.NewReader(""))); err != errNoStatus {
		t.Fatalf("readResponse(closed) error = %v, want errNoStatus", err)
	}
	if _, _, _, err := readResponse(bufio.NewReader(strings.NewReader("SMTP ready\r\n"))); err == nil {
		t.Fatal("readResponse accepted a non-HTTP status line")
	}
}

func TestSendLogKeepsInsideTheSendLimits(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var s sendLog
	if !s.canStart(t0) {
		t.Fatal("a user never started cannot start")
	}
	s.record(t0)
	if s.canStart(t0.Add(10 * time.Second)) {
		t.Fatal("a second start inside the resend interval is allowed")
	}
	if !s.canStart(t0.Add(resendGap)) {
		t.Fatal("a start after the resend interval is refused")
	}
	s.verified = true
	if !s.canStart(t0.Add(time.Second)) {
		t.Fatal("a verified PIN does not lift the resend interval")
	}
	now := t0
	for range sendsAllowed - 1 {
		now = now.Add(time.Second)
		s.record(now)
		s.verified = true
	}
	if s.canStart(now.Add(time.Second)) {
		t.Fatalf("a start beyond %d sends in the window is allowed", sendsAllowed)
	}
	if !s.canStart(t0.Add(sendWindow + time.Second)) {
		t.Fatal("a start is refused after the first send left the window")
	}
}

func TestPINPoolChecksWrongThenRightRoundRobin(t *testing.T) {
	p := newPINPool(&api{sid: "s"}, nil, nil, 2, nil)
	for _, id := range []string{"a", "b"} {
		u := &pinUser{id: id, pin: "123456", checksLeft: 3}
		p.reserve.push(u)
		p.checksReady += 3
	}
	var got []string
	for {
		r, ok := p.nextCheck()
		if !ok {
			break
		}
		kind := "wrong"
		if bytes.Contains(r.body, []byte(`"123456"`)) {
			kind = "right"
		}
		if kind != r.label {
			t.Fatalf("request labelled %s carries a %s code: %s", r.label, kind, r.body)
		}
		got = append(got, strings.TrimPrefix(r.path, "/v1/service/service/s/users/")+" "+kind)
	}
	want := "a/auth wrong,b/auth wrong,a/auth wrong,b/auth wrong,a/auth right,b/auth right"
	if strings.Join(got, ",") != want {
		t.Fatalf("checks = %v, want %s", got, want)
	}
	if p.checksReady != 0 {
		t.Fatalf("checksReady = %d after the pool ran dry, want 0", p.checksReady)
	}
}

func TestTOTPTargeterNeverReusesAStep(t *testing.T) {
	params := totp.DefaultParams()
	s := &totpScenario{api: &api{sid: "s"}, params: params}
	seed := bytes.Repeat([]byte{7}, 20)
	for _, id := range []string{"a", "b", "c"} {
		s.users = append(s.users, &totpUser{id: id, seed: seed, lastStep: totp.Step(time.Unix(1_000_000, 0), 30)})
	}
	now := time.Unix(1_000_000, 0)
	rights, wrongs := 0, 0
	for i := 0; ; i++ {
		r, ok := s.nextRequest(i, now)
		if !ok {
			break
		}
		switch r.label {
		case "right":
			rights++
		case "wrong":
			wrongs++
		}
		if i > 1000 {
			t.Fatal("the targeter never runs out of failure budget")
		}
	}
	// Confirmed at the current step, each user has exactly one more step
	// (the next) the server would accept now, and then its budget of wrongs.
	if rights != 3 || wrongs != 3*wrongPerWindow {
		t.Fatalf("within one step: %d right and %d wrong codes, want 3 and %d", rights, wrongs, 3*wrongPerWindow)
	}
	if r, ok := s.nextRequest(0, now.Add(failureWindow+30*time.Second)); !ok || r.label != "right" {
		t.Fatalf("a step and a failure window later the targeter gives %q, %v; want a right code", r.label, ok)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-open", "4s", "-scenarios", "check,mix,check"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.closedDur != 1500*time.Millisecond || cfg.openDur != 4*time.Second || cfg.storageDur != time.Second {
		t.Fatalf("-quick -open 4s gives closed %v open %v storage %v; want 1.5s, 4s, 1s", cfg.closedDur, cfg.openDur, cfg.storageDur)
	}
	if got := strings.Join(cfg.scenarios, ","); got != "check,mix" {
		t.Fatalf("scenarios = %s, want check,mix", got)
	}
	if cfg.compareUsers != 0 {
		t.Fatalf("-compare-users is %d by default, want 0 (no comparison)", cfg.compareUsers)
	}
	if cfg, err := parseFlags([]string{"-users", "1000000", "-compare-users", "1000"}); err != nil || cfg.compareUsers != 1000 {
		t.Fatalf("-users 1000000 -compare-users 1000: %v, %+v", err, cfg)
	}
	for _, args := range [][]string{{"-scenarios", "nope"}, {"-users", "0"}, {"-db", "mysql"}, {"-wrong", "10"}, {"-wrong", "6"}, {"-pg-pool", "-1"}, {"-sqlite-sync", "off"}, {"stray"},
		{"-compare-users", "1000"}, {"-users", "5000", "-compare-users", "5000"}, {"-compare-users", "-1"}, {"-compare-users", "10000001"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%v) succeeded", args)
		}
	}
}

// TestSQLiteSyncIsNamedInTheReport: the durability a SQLite run's servers
// commit with is on their command line, in the JSON and in the table's
// heading, full by default; a PostgreSQL run names none.
func TestSQLiteSyncIsNamedInTheReport(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "sqlite (--sqlite-sync full), "},
		{[]string{"-sqlite-sync", "normal"}, "sqlite (--sqlite-sync normal), "},
	} {
		cfg, err := parseFlags(c.args)
		if err != nil {
			t.Fatal(err)
		}
		r := &runner{cfg: cfg}
		if args := strings.Join(r.serveArgs("127.0.0.1:1", "/tmp/d", "", false), " "); !strings.Contains(args, "--sqlite-sync "+cfg.sqliteSync+" ") {
			t.Errorf("%v: verity serve runs with %q, not --sqlite-sync %s", c.args, args, cfg.sqliteSync)
		}
		if args := strings.Join(r.serveArgs("127.0.0.1:1", "/tmp/d", "postgres://h/db", false), " "); strings.Contains(args, "--sqlite-sync") {
			t.Errorf("%v: verity serve on PostgreSQL runs with %q", c.args, args)
		}
		res := newResults(cfg)
		if md := res.markdown(); !strings.Contains(md, c.want) {
			t.Errorf("%v: the heading does not say %q:\n%s", c.args, c.want, md)
		}
		if got := res.Config["sqlite_sync"]; got != cfg.sqliteSync {
			t.Errorf("%v: the JSON's sqlite_sync is %v, want %s", c.args, got, cfg.sqliteSync)
		}
	}
	cfg, err := parseFlags([]string{"-db", "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if res := newResults(cfg); res.Config["sqlite_sync"] != nil || strings.Contains(res.markdown(), "sqlite-sync") {
		t.Errorf("a PostgreSQL run claims a SQLite sync mode: %v", res.Config["sqlite_sync"])
	}
}

// TestWithPool: -pg-pool reaches the store's URL as pool_max_conns, beside
// the parameters already there, and 0 leaves the URL as it was.
func TestWithPool(t *testing.T) {
	const base = "postgres://postgres@127.0.0.1:5432/verity_bench_x_check?sslmode=disable"
	if got := withPool(base, 0); got != base {
		t.Errorf("withPool(base, 0) = %q, want it unchanged", got)
	}
	u, err := url.Parse(withPool(base, 64))
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("pool_max_conns") != "64" || q.Get("sslmode") != "disable" || u.Path != "/verity_bench_x_check" {
		t.Errorf("withPool(base, 64) = %q, want pool_max_conns=64 beside sslmode=disable on the same database", u)
	}
}

func TestNumGroupsThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestStartTargeterUsesEachUserOncePerResendInterval(t *testing.T) {
	seeded := []string{"a", "b", "c"}
	s := newStartScenario(&api{sid: "s"}, seeded, 1, nil)
	next, err := s.prepare(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	var got []string
	for i := 0; ; i++ {
		r, ok := next(i, t0)
		if !ok {
			break
		}
		got = append(got, strings.TrimSuffix(strings.TrimPrefix(r.path, "/v1/service/service/s/users/"), "/auth"))
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("starts at one instant = %v, want each seeded user once", got)
	}
	if r, ok := next(3, t0.Add(resendGap)); !ok || !strings.Contains(r.path, "/users/a/") {
		t.Fatalf("after the resend interval the targeter gives %q, %v; want user a again", r.path, ok)
	}
	if strings.Join(seeded, ",") != "a,b,c" {
		t.Fatalf("the scenario changed the seeded ids: %v", seeded)
	}
}

func TestParsePgbenchOutput(t *testing.T) {
	pg15 := `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/verity-bench-1/pgbench-update.sql
scaling factor: 1
query mode: prepared
number of clients: 64
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 19512
number of failed transactions: 0 (0.000%)
latency average = 16.390 ms
initial connection time = 61.287 ms
tps = 3904.866012 (without initial connection time)
`
	f, err := parsePgbenchOutput(pg15)
	if err != nil || f.tps != 3904.866012 || f.latencyAvgMs != 16.39 || f.transactions != 19512 || f.failed != 0 {
		t.Fatalf("parsePgbenchOutput(PostgreSQL 15) = %+v, %v; want tps 3904.866012, latency 16.39 ms, 19512 transactions", f, err)
	}
	// Before PostgreSQL 14: an "including" line first, then the one to keep.
	pg13 := `transaction type: update.sql
number of transactions actually processed: 6310
latency average = 15.844 ms
tps = 631.115837 (including connections establishing)
tps = 631.281085 (excluding connections establishing)
`
	if f, err := parsePgbenchOutput(pg13); err != nil || f.tps != 631.281085 || f.latencyAvgMs != 15.844 {
		t.Fatalf("parsePgbenchOutput(PostgreSQL 13) = %+v, %v; want the excluding line's 631.281085", f, err)
	}
	if f, err := parsePgbenchOutput("tps = 12.5 (without initial connection time)\n"); err != nil || f.tps != 12.5 || f.latencyAvgMs != 0 {
		t.Fatalf("parsePgbenchOutput(tps only) = %+v, %v; want tps 12.5 and no latency", f, err)
	}
	for _, bad := range []string{
		"",
		"pgbench: error: connection to server failed: FATAL:  sorry, too many clients already\n",
		"tps = 631.115837 (including connections establishing)\n",
		"tps = fast (without initial connection time)\n",
	} {
		if f, err := parsePgbenchOutput(bad); err == nil {
			t.Errorf("parsePgbenchOutput(%q) = %+v, want an error", bad, f)
		}
	}
}

func TestPgbenchShareLine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pct, next float64 // next 0: no pgbench run next to the row
		pool      int
		want      string
	}{
		{"check", 45.4, 0, 64, "- check = 45 % of pgbench's single-row-update rate at 64 clients, Verity on 64 connections (target ≥ 60 %: not met)\n"},
		{"totp", 60, 0, 64, "- totp = 60 % of pgbench's single-row-update rate at 64 clients, Verity on 64 connections (target ≥ 60 %: met)\n"},
		{"create", 98, 0, 0, "- create = 98 % of pgbench's single-row-update rate at 64 clients, Verity on its default pool of 4 × GOMAXPROCS connections\n"},
		// The verdict follows the run next to the row, either way.
		{"check", 55, 61, 0, "- check = 55 % of pgbench's single-row-update rate at 64 clients, 61 % of its run next to the row (12,000 tps), Verity on its default pool of 4 × GOMAXPROCS connections (target ≥ 60 %: met)\n"},
		{"totp", 65, 59.4, 8, "- totp = 65 % of pgbench's single-row-update rate at 64 clients, 59 % of its run next to the row (12,000 tps), Verity on 8 connections (target ≥ 60 %: not met)\n"},
	} {
		s := scenarioResult{Name: tc.name, PctPgbench: &tc.pct}
		if tc.next > 0 {
			s.PctAdjacentPgbench, s.AdjacentPgbench = &tc.next, &pgbenchResult{TPS: 12000}
		}
		if got := pgbenchShareLine(s, 64, tc.pool); got != tc.want {
			t.Errorf("pgbenchShareLine(%s, %v, %v) = %q, want %q", tc.name, tc.pct, tc.next, got, tc.want)
		}
	}
}

// runPgbenchCeiling prepares and runs a pgbench ceiling for a second on a
// throwaway database of VERITY_TEST_POSTGRES_URL, dropped after the test;
// it skips the test when PostgreSQL or pgbench is missing.
func runPgbenchCeiling(t *testing.T, workload pgbenchWorkload, rows, clients int) (*pgbenchCeiling, pgbenchResult) {
	t.Helper()
	base := os.Getenv("VERITY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("VERITY_TEST_POSTGRES_URL not set: the pgbench run is skipped")
	}
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		t.Skip("pgbench not installed: the pgbench run is skipped")
	}
	pg, err := newPGAdmin(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.dropAll(context.Background()); err != nil {
			t.Error(err)
		}
	})
	c := newPgbenchCeiling(bin, workload, rows, clients, time.Second)
	if err := c.prepare(t.Context(), pg, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	res, err := c.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c, res
}

// TestPgbenchCeilingRuns runs the real pgbench for a second against
// VERITY_TEST_POSTGRES_URL, when both are there.
func TestPgbenchCeilingRuns(t *testing.T) {
	_, res := runPgbenchCeiling(t, pgbenchUpdate, 100, 4)
	if res.TPS <= 0 || res.Transactions == 0 || res.Clients != 4 || res.DurationSeconds != 1 || !strings.Contains(res.Command, "-M prepared -c 4") {
		t.Fatalf("pgbench run = %+v; want transactions at 4 clients for 1 s", res)
	}
	t.Logf("pgbench: %.0f tps, latency average %.2f ms, PostgreSQL %.0f µs CPU/tx, %s", res.TPS, res.LatencyAvgMs, res.PostgresCPUPerTx, res.Command)
}

// TestPgbenchCheckScript: every parameter of the store's statement has a
// stand-in, so pgbench runs exactly that statement on the seeded users.
func TestPgbenchCheckScript(t *testing.T) {
	script := pgbenchCheckScript(500)
	first, stmt, _ := strings.Cut(script, "\n")
	if first != `\set id random(1, 500)` || !strings.HasSuffix(stmt, ";\n") {
		t.Fatalf("script = %q; want a \\set of id over the 500 users, then one statement", script)
	}
	if p := sqlPlaceholder.FindString(stmt); p != "" {
		t.Fatalf("placeholder %s has no stand-in in the script:\n%s", p, stmt)
	}
	for _, want := range []string{"WITH c AS (", "ARRAY['u' || :id]", "ARRAY[decode('02" + strings.Repeat("00", 32) + "', 'hex')"} {
		if !strings.Contains(stmt, want) {
			t.Errorf("the script's statement lacks %q:\n%s", want, stmt)
		}
	}
}

// TestPgbenchCheckCeilingCountsEveryTry runs the check workload with the
// real pgbench and PostgreSQL, when both are there, and checks that each of
// its transactions took the statement's wrong-code path: one try counted
// against a PIN and one failure against its user, as many of each as
// pgbench committed transactions.
func TestPgbenchCheckCeilingCountsEveryTry(t *testing.T) {
	c, res := runPgbenchCeiling(t, pgbenchCheck, 50, 2)
	if res.Workload != pgbenchCheck || res.TPS <= 0 || res.Transactions == 0 || res.Failed != 0 {
		t.Fatalf("pgbench check run = %+v; want transactions and no failure", res)
	}
	conn, err := pgx.Connect(t.Context(), c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var tries, failures int
	if err := conn.QueryRow(t.Context(), "SELECT (SELECT sum(attempts) FROM pins), (SELECT sum(failure_count) FROM users)").Scan(&tries, &failures); err != nil {
		t.Fatal(err)
	}
	if tries != res.Transactions || failures != res.Transactions {
		t.Fatalf("after %d transactions: %d tries counted against PINs, %d failures against users; want one of each per transaction", res.Transactions, tries, failures)
	}
	t.Logf("pgbench check: %.0f tps, PostgreSQL %.0f µs CPU/tx, %d transactions", res.TPS, res.PostgresCPUPerTx, res.Transactions)
}

// TestAdjacentCeilingShare: a row's share of the HTTP ceiling measured
// right after it is reported beside its share of the run's ceiling, and
// every row of the table, whatever it holds, has the header's cells.
func TestAdjacentCeilingShare(t *testing.T) {
	cfg, err := parseFlags([]string{"-db", "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	r := newResults(cfg)
	r.HTTPCeiling = &scenarioResult{Name: "HTTP ceiling", Peak: 50000}
	r.Storage = &storageResult{Backend: "postgres", CheckPIN: storeRate{OpsPerSec: 8000}}
	r.Pgbench = &pgbenchResult{Workload: pgbenchUpdate, Clients: 64, TPS: 20000}
	r.PgbenchCheck = &pgbenchResult{Workload: pgbenchCheck, Clients: 64, Skipped: "pgbench is not installed"}
	r.add(scenarioResult{Name: "check", Description: "checks", Peak: 20000, AdjacentCeiling: &phaseJSON{OpsPerSec: 40000, ServerCPUPerOp: 21}})
	r.add(scenarioResult{Name: "totp", Peak: 20000})
	r.add(scenarioResult{Name: "start", Skipped: "no reason"})
	r.finish()
	if got := r.Scenarios[0].PctAdjacent; got != 50 {
		t.Fatalf("check's share of the ceiling next to it = %v, want 50", got)
	}
	if got := r.Scenarios[1].PctAdjacent; got != 0 {
		t.Fatalf("totp, with no ceiling next to it, has a share of %v", got)
	}
	md := r.markdown()
	if !strings.Contains(md, "| check | 20,000 | 40% | 50% | 250% |") || !strings.Contains(md, "| totp | 20,000 | 40% |  | 250% |") {
		t.Fatalf("the rows do not show both shares:\n%s", md)
	}
	if !strings.Contains(md, "The HTTP ceiling right after it: 40,000/s at 21 µs of server CPU per request") {
		t.Errorf("check's note does not give the ceiling next to it:\n%s", md)
	}
	header := -1
	for line := range strings.Lines(md) {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Count(line, "|")
		if header < 0 {
			header = cells
		} else if cells != header {
			t.Errorf("%d cell borders where the header has %d: %s", cells, header, line)
		}
	}
}

// TestPgbenchCheckShare: the check statement's pgbench rate is reported as
// a share of the single-row update's, in the JSON and in its note.
func TestPgbenchCheckShare(t *testing.T) {
	cfg, err := parseFlags([]string{"-db", "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	r := newResults(cfg)
	r.Pgbench = &pgbenchResult{Workload: pgbenchUpdate, Clients: 64, TPS: 20000, Transactions: 100000}
	r.PgbenchCheck = &pgbenchResult{Workload: pgbenchCheck, Clients: 64, TPS: 5000, Transactions: 25000}
	r.finish()
	if got := r.PgbenchCheck.PctPgbench; got != 25 {
		t.Fatalf("the check statement's share of the update's rate = %v, want 25", got)
	}
	md := r.markdown()
	for _, want := range []string{
		"| pgbench running Verity's check statement (64 clients) | 5,000 |",
		"): 5,000 tps = 25 % of the single-row update's rate",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}

func TestPgbenchCeilingSkipsWithoutPgbench(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg, err := parseFlags([]string{"-db", "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: cfg, results: newResults(cfg)}
	if err := r.measurePgbenchCeiling(t.Context()); err != nil {
		t.Fatalf("a missing pgbench failed the run: %v", err)
	}
	r.results.add(scenarioResult{Name: "check", Peak: 1000})
	r.results.finish()
	md := r.results.markdown()
	if pb := r.results.Pgbench; pb == nil || pb.Skipped == "" || pb.TPS != 0 || r.results.Scenarios[0].PctPgbench != nil {
		t.Fatalf("without pgbench: %+v, check %+v; want a skipped ceiling and no ratio", pb, r.results.Scenarios[0])
	}
	if !strings.Contains(md, "| pgbench single-row update (64 clients) | skipped: pgbench is not installed") || !strings.Contains(md, "- pgbench ceiling skipped:") {
		t.Fatalf("the report does not say pgbench was skipped:\n%s", md)
	}
	if pc := r.results.PgbenchCheck; pc == nil || pc.Skipped == "" ||
		!strings.Contains(md, "| pgbench running Verity's check statement (64 clients) | skipped: pgbench is not installed") ||
		!strings.Contains(md, "- pgbench running Verity's check statement skipped:") {
		t.Fatalf("the report does not say the check statement's pgbench run was skipped: %+v\n%s", pc, md)
	}
}

// TestTOTPPoolRegistersUsersOnceTheSeededOnesHaveApps: a rate the seeded
// users' failure budgets cannot carry makes prepare register and enrol
// more users instead of running dry (seen at 20,000 checks/s with 1000
// seeded users).
func TestTOTPPoolRegistersUsersOnceTheSeededOnesHaveApps(t *testing.T) {
	var mu sync.Mutex
	registered, enrolled := 0, map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/users/bulk"):
			var in struct{ Users []newUser }
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			var out struct {
				Users []map[string]string `json:"users"`
			}
			for range in.Users {
				registered++
				out.Users = append(out.Users, map[string]string{"id": fmt.Sprintf("new%d", registered)})
			}
			json.NewEncoder(w).Encode(out)
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/totp"):
			fmt.Fprint(w, `{"secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}`)
		case r.Method == "PUT" && strings.HasSuffix(r.URL.Path, "/totp"):
			enrolled[strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/service/service/s/users/"), "/totp")] = true
			fmt.Fprint(w, `{}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tg, err := newTarget(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	bulk := true
	seeded := make([]string, 2, 8) // spare capacity: an append into it would show
	seeded[0], seeded[1] = "a", "b"
	s := &totpScenario{api: &api{tg: tg, sid: "s"}, uids: seeded, initial: 2, conns: 2, bulk: &bulk, params: totp.DefaultParams()}
	if _, err := s.prepare(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	// Two seeded users carry 2 × wrongPerWindow wrong codes; ask for three
	// more users' worth.
	if _, err := s.prepare(t.Context(), 5*wrongPerWindow); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if registered != 3 || s.created != 3 || len(s.users) != 5 {
		t.Fatalf("registered %d users (scenario says %d), pool of %d; want 3 more users and a pool of 5", registered, s.created, len(s.users))
	}
	for _, id := range []string{"a", "b", "new1", "new2", "new3"} {
		if !enrolled[id] {
			t.Errorf("user %s has no app; enrolled: %v", id, enrolled)
		}
	}
	if spare := seeded[:cap(seeded)][2:]; slices.ContainsFunc(spare, func(id string) bool { return id != "" }) {
		t.Fatalf("the scenario appended into the seeded ids' array: %q", spare)
	}
}

// TestSlotClockWakesAtEachSlotNeverBefore checks the open loop's clock on
// what does not depend on the machine's speed: it never wakes before a
// slot's time, a slot already due costs no wait, and a cancelled context
// ends a wait at once.
func TestSlotClockWakesAtEachSlotNeverBefore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock, err := newSlotClock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer clock.close()
	start := time.Now().Add(time.Millisecond)
	for k := range 200 {
		at := slotTime(start, k, 20000) // every 50 µs, far below a Go timer's millisecond
		if !clock.until(at) {
			t.Fatalf("slot %d: the wait failed", k)
		}
		if now := time.Now(); now.Before(at) {
			t.Fatalf("slot %d: woke %v before its time", k, at.Sub(now))
		}
	}
	if !clock.until(time.Now().Add(-time.Second)) {
		t.Fatal("a slot already due must not wait")
	}

	done := make(chan bool)
	go func() { done <- clock.until(time.Now().Add(time.Hour)) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("a wait cut short by the context reported the slot as due")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the context did not end the wait")
	}
}

// TestCreateUsersSpreadsTheOrder: the users a scenario registers come back
// shuffled, the same way for the same names every run, so scenarios that
// take users from the front touch them spread over all those registered
// (in registration order, a start scenario ran 20 % faster than on users
// spread over the data set: see spreadOrder).
func TestCreateUsersSpreadsTheOrder(t *testing.T) {
	var mu sync.Mutex
	registered := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Users []newUser }
		if r.Method != "POST" || !strings.HasSuffix(r.URL.Path, "/users/bulk") || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.NotFound(w, r)
			return
		}
		var out struct {
			Users []map[string]string `json:"users"`
		}
		for _, u := range in.Users { // the id names the user: the same users get the same ids
			out.Users = append(out.Users, map[string]string{"id": "id-" + u.IDInService})
		}
		mu.Lock()
		registered += len(in.Users)
		mu.Unlock()
		json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	tg, err := newTarget(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &api{tg: tg, sid: "s"}
	bulk := true
	const n = 2500
	first, err := a.createUsers(t.Context(), "x-", 100, n, 4, &bulk)
	if err != nil {
		t.Fatal(err)
	}
	inOrder := make([]string, n)
	for i := range inOrder {
		inOrder[i] = fmt.Sprintf("id-x-%d", 100+i)
	}
	if registered != n {
		t.Fatalf("registered %d users, want %d", registered, n)
	}
	if slices.Equal(first, inOrder) {
		t.Fatal("createUsers returned the users in the order they were registered")
	}
	if got := slices.Sorted(slices.Values(first)); !slices.Equal(got, slices.Sorted(slices.Values(inOrder))) {
		t.Fatalf("createUsers returned %d ids that are not the %d registered, each once", len(first), n)
	}
	// The front of the order reaches across the whole range, not only its start.
	if front := first[:n/10]; !slices.ContainsFunc(front, func(id string) bool { return slices.Index(inOrder, id) >= n/2 }) {
		t.Fatalf("the first tenth of the order holds no user from the second half: %q", front)
	}
	again, err := a.createUsers(t.Context(), "x-", 100, n, 4, &bulk)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, again) {
		t.Fatal("the same users came back in another order: a run would not repeat the last")
	}
}

func TestStorageOpInterleavesAttemptsInOrder(t *testing.T) {
	for _, tc := range []struct{ n, per int }{{4000, 2}, {4000, 3}, {4001, 2}, {1024, 2}, {2047, 4}, {300, 2}, {10000, 10}} {
		seen := make(map[[2]int]int) // (user, attempt) → j
		for j := range tc.n * tc.per {
			u, a := storageOp(j, tc.n, tc.per)
			if u < 0 || u >= tc.n || a < 0 || a >= tc.per {
				t.Fatalf("n=%d per=%d: op %d is user %d attempt %d, out of range", tc.n, tc.per, j, u, a)
			}
			key := [2]int{u, a}
			if prev, dup := seen[key]; dup {
				t.Fatalf("n=%d per=%d: user %d attempt %d at ops %d and %d", tc.n, tc.per, u, a, prev, j)
			}
			seen[key] = j
			if a > 0 {
				prev, ok := seen[[2]int{u, a - 1}]
				if !ok {
					t.Fatalf("n=%d per=%d: user %d attempt %d before attempt %d", tc.n, tc.per, u, a, a-1)
				}
				if gap, want := j-prev, min(tc.n, storageBlock); gap < want {
					t.Fatalf("n=%d per=%d: user %d's attempts %d and %d only %d ops apart, want ≥ %d", tc.n, tc.per, u, a-1, a, gap, want)
				}
			}
			// Every prefix of the round has the round's mix, give or take
			// what one block's attempts can skew it by.
			if j > 0 && j%97 == 0 {
				firsts := 0
				for k := range j {
					if _, a := storageOp(k, tc.n, tc.per); a == 0 {
						firsts++
					}
				}
				blocks := max(1, tc.n/storageBlock)
				slack := (tc.n + blocks - 1) / blocks * (tc.per - 1) / tc.per
				if want := j / tc.per; firsts < want-slack || firsts > want+slack {
					t.Fatalf("n=%d per=%d: the first %d ops hold %d first attempts, want about %d", tc.n, tc.per, j, firsts, want)
				}
			}
		}
		if len(seen) != tc.n*tc.per {
			t.Fatalf("n=%d per=%d: %d distinct operations, want %d", tc.n, tc.per, len(seen), tc.n*tc.per)
		}
	}
}

func TestFailedAnswersAreNotLatencySamples(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(20 * time.Millisecond)
		}
		if r.URL.Path == "/refused" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	tg, err := newTarget(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	rec := newRecorder()
	for _, path := range []string{"/slow", "/refused", "/refused", "/slow"} {
		now := time.Now()
		rec.exchange(t.Context(), tg, request{method: "GET", path: path, want: 200, label: "ok"}, now, now, true)
	}
	s := rec.seg
	if s.ops != 4 || s.ok != 2 || s.failures["status 429"] != 2 {
		t.Fatalf("ops %d, ok %d, failures %v; want 4, 2 and two 429s", s.ops, s.ok, s.failures)
	}
	if len(s.latencies) != 2 {
		t.Fatalf("%d latency samples, want one per answer as expected (2)", len(s.latencies))
	}
	for _, l := range s.latencies {
		if l < 20*time.Millisecond {
			t.Fatalf("latency sample %v is a refusal's, not a slow answer's", l)
		}
	}
	if len(s.lags) != 4 {
		t.Fatalf("%d send lags, want one per request sent (4)", len(s.lags))
	}
}

// TestCredentialsAreAwaited: the reader of a server's output may reach the
// dev banner after /healthz already answered; the run waits for it rather
// than failing the row ("verity printed no dev credentials", seen once in
// twelve rows), and gives up at once when the process exits without it.
func TestCredentialsAreAwaited(t *testing.T) {
	late := &process{exited: make(chan struct{})}
	go func() {
		time.Sleep(100 * time.Millisecond)
		late.readOutput(strings.NewReader("starting\nexport VERITY_AUTH='dev:s3cret'\n"))
	}()
	if got := late.waitCredentials(10 * time.Second); got != "dev:s3cret" {
		t.Fatalf("credentials read late = %q, want dev:s3cret", got)
	}

	gone := &process{exited: make(chan struct{})}
	close(gone.exited)
	start := time.Now()
	if got := gone.waitCredentials(10 * time.Second); got != "" {
		t.Fatalf("credentials of a process that printed none = %q", got)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("waited %v for an exited process's credentials", waited)
	}
}
