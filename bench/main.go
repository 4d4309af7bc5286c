// Command bench measures Verity on one machine, reproducibly: it builds
// the real server, starts it as a separate process on a fresh copy of a
// seeded database for every scenario, finds each scenario's peak
// throughput with a closed loop of keep-alive connections, then measures
// latency with an open loop at a fraction of that peak, and compares the
// peaks with two ceilings measured in the same run: a minimal Go HTTP
// server driven the same way, and the bare store operations of a check.
//
//	go run ./bench                         # SQLite, 1000 users, every scenario
//	go run ./bench -quick -scenarios check
//	go run ./bench -db postgres -users 100000
//
// It prints a Markdown table and writes the details as JSON (-out). See
// docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/verityhq/verity/sqlite"
)

// config is the command line.
type config struct {
	db           string
	postgresURL  string
	users        int
	compareUsers int // -compare-users: a second data set every row also runs on; 0: none
	scenarios    []string
	conns        int
	closedDur    time.Duration
	openDur      time.Duration
	openFraction float64
	storageDur   time.Duration
	pool         int
	wrong        int
	totpUsers    int
	openConns    int
	out          string
	quick        bool
	quietWait    time.Duration
	retryNoisy   bool
	serverFlags  []string
	pgPool       int    // pool_max_conns of every store on PostgreSQL; 0: the store's default
	sqliteSync   string // -db sqlite: every server's and the storage ceiling's durability, full or normal
	debugAddr    string // if set, the generator's own profiler listens here
}

// allScenarios are the scenario names -scenarios accepts, in run order.
var allScenarios = []string{"check", "start", "totp", "mix", "create"}

// selfPID is the benchmark's own process id, for its CPU time.
var selfPID = os.Getpid()

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&cfg.db, "db", "sqlite", "database: sqlite or postgres")
	fs.StringVar(&cfg.postgresURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"maintenance database in which -db postgres creates (and afterwards drops) throwaway verity_bench_* databases")
	fs.IntVar(&cfg.users, "users", 1000, "users seeded into the service before any scenario (1000 to 10,000,000)")
	fs.IntVar(&cfg.compareUsers, "compare-users", 0, "also seed this many users in a second data set, and run every row on both, alternately (-users, this, this, -users), to compare them: e.g. -users 1000000 -compare-users 1000. The table's rows are the -users runs as without it (a disturbed one measured again by -retry-noisy); the comparison keeps its own four runs")
	scenarios := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", "))
	fs.IntVar(&cfg.conns, "c", 64, "concurrent keep-alive connections of the closed loop (and of the storage ceiling)")
	fs.DurationVar(&cfg.closedDur, "closed", 5*time.Second, "measured time of each closed-loop (peak) phase")
	fs.DurationVar(&cfg.openDur, "open", 5*time.Second, "measured time of each open-loop (latency) phase")
	fs.Float64Var(&cfg.openFraction, "fraction", 0.5, "open-loop rate as a fraction of the closed-loop peak")
	fs.DurationVar(&cfg.storageDur, "storage", 2*time.Second, "measured time of the storage ceiling's CheckPIN mix (its four explanatory workloads get half each)")
	fs.IntVar(&cfg.pool, "pool", 10000, "users in the check and mix PIN pools (and, up to 4000, in the storage ceiling)")
	fs.IntVar(&cfg.wrong, "wrong", 1, "check scenario: wrong codes per PIN before the right one (0-5)")
	fs.IntVar(&cfg.totpUsers, "totp-users", 1000, "totp scenario: users given an authenticator app before the first measurement")
	fs.IntVar(&cfg.openConns, "open-conns", 0, "open loop: keep-alive connections, so most requests in flight (default: -c); later slots queue in the generator, their wait counted in their latency")
	fs.DurationVar(&cfg.quietWait, "quiet", 5*time.Second, "before each measurement, wait up to this long for other processes to leave the CPUs idle")
	fs.BoolVar(&cfg.retryNoisy, "retry-noisy", true, "measure again, once, each row during which other processes kept more than 0.3 cores busy, and keep the quieter run")
	serverFlags := fs.String("server-flags", "", "extra flags for every `verity serve` the benchmark starts, space-separated (e.g. \"--debug-addr 127.0.0.1:6061\" to take a CPU profile while a scenario runs)")
	fs.IntVar(&cfg.pgPool, "pg-pool", 0, "-db postgres: connections in each Verity's pool and the storage ceiling's (pool_max_conns); 0 leaves Verity's default, 4 × GOMAXPROCS. Several Verity processes can be open at once: keep their sum within PostgreSQL's max_connections")
	fs.StringVar(&cfg.sqliteSync, "sqlite-sync", "full", "-db sqlite: the durability every Verity the benchmark starts (--sqlite-sync) and the storage ceiling commit with: full (Verity's default, survives power loss) or normal (opt-in, survives a crash of the process); see docs/durability.md")
	fs.StringVar(&cfg.debugAddr, "debug-addr", "", "serve the load generator's own profiler at /debug/pprof/ on this address (e.g. 127.0.0.1:6062): its CPU per request is part of every row")
	fs.StringVar(&cfg.out, "out", "bench-results.json", "JSON results file")
	fs.BoolVar(&cfg.quick, "quick", false, "short phases (1.5 s closed, 1.5 s open, 1 s storage) unless set explicitly")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, d := range map[string]*time.Duration{"closed": &cfg.closedDur, "open": &cfg.openDur, "storage": &cfg.storageDur} {
			if !set[name] {
				*d = map[string]time.Duration{"closed": 1500 * time.Millisecond, "open": 1500 * time.Millisecond, "storage": time.Second}[name]
			}
		}
	}
	if cfg.openConns == 0 {
		cfg.openConns = cfg.conns
	}
	if cfg.pgPool < 0 {
		return nil, fmt.Errorf("-pg-pool %d: want 0 (Verity's default) or more", cfg.pgPool)
	}
	if cfg.sqliteSync != string(sqlite.SyncFull) && cfg.sqliteSync != string(sqlite.SyncNormal) {
		return nil, fmt.Errorf("-sqlite-sync %q: want %s or %s", cfg.sqliteSync, sqlite.SyncFull, sqlite.SyncNormal)
	}
	cfg.serverFlags = strings.Fields(*serverFlags)
	for _, s := range strings.Split(*scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ","))
		}
		if !slices.Contains(cfg.scenarios, s) {
			cfg.scenarios = append(cfg.scenarios, s)
		}
	}
	switch {
	case cfg.db != "sqlite" && cfg.db != "postgres":
		return nil, fmt.Errorf("-db must be sqlite or postgres")
	case cfg.users < 1 || cfg.users > 10_000_000:
		return nil, fmt.Errorf("-users must be between 1 and 10,000,000")
	case cfg.compareUsers < 0 || cfg.compareUsers > 10_000_000 || cfg.compareUsers == cfg.users:
		return nil, fmt.Errorf("-compare-users must be 0 (no comparison) or between 1 and 10,000,000, and not -users")
	case cfg.conns < 1 || cfg.conns > 4096:
		return nil, fmt.Errorf("-c must be between 1 and 4096")
	case cfg.closedDur < 100*time.Millisecond || cfg.openDur < 100*time.Millisecond || cfg.storageDur < 100*time.Millisecond:
		return nil, fmt.Errorf("-closed, -open and -storage must be at least 100ms")
	case cfg.closedDur > 10*time.Minute || cfg.openDur > 10*time.Minute || cfg.storageDur > 10*time.Minute:
		return nil, fmt.Errorf("-closed, -open and -storage must be at most 10m")
	case cfg.openFraction <= 0 || cfg.openFraction > 1:
		return nil, fmt.Errorf("-fraction must be in (0, 1]")
	case cfg.quietWait < 0 || cfg.quietWait > 10*time.Minute:
		return nil, fmt.Errorf("-quiet must be between 0 and 10m")
	case cfg.pool < 1 || cfg.totpUsers < 1 || cfg.openConns < 0 || cfg.openConns > 4096:
		return nil, fmt.Errorf("-pool and -totp-users must be positive, -open-conns between 0 and 4096")
	case cfg.wrong < 0 || cfg.wrong > 5:
		// A user may get 18 PINs a minute and fail 100 times in one: 18
		// PINs of 6 wrong codes each would lock the users out, and their
		// checks would be answered THROTTLED without a write.
		return nil, fmt.Errorf("-wrong must be between 0 and 5 (a user's 18 PINs a minute at 6 wrong codes each would pass its failure_limit, 100 a minute)")
	}
	return cfg, nil
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// kills the process the default way.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore the default action for a second signal
	}()
	return ctx, stop
}

func main() {
	if os.Getenv(stallProbeEnv) == "1" {
		runStallProbe(os.Stdout) // returns when the benchmark is gone
		return
	}
	if len(os.Args) == 3 && os.Args[1] == ceilingServerCommand {
		if err := runCeilingServer(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "ceiling server:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signalContext()
	defer stop()
	if cfg.debugAddr != "" {
		if err := serveProfiler(cfg.debugAddr); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	r := &runner{cfg: cfg}
	err = r.run(ctx)
	if cerr := r.cleanup(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// serveProfiler serves net/http/pprof for the generator itself on addr.
func serveProfiler(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(ln, mux)
	logf("the generator's profiler listens on http://%s/debug/pprof/", ln.Addr())
	return nil
}

// logf reports progress on stderr; stdout carries only the table.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
