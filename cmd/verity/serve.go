package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/httpapi"
	"github.com/verityhq/verity/sender/discard"
	logsender "github.com/verityhq/verity/sender/log"
	"github.com/verityhq/verity/sender/webhook"
)

type serveCmd struct {
	dbFlags
	Addr                  string        `name:"addr" default:"127.0.0.1:8080" env:"VERITY_ADDR" help:"Listen address."`
	SMSWebhook            string        `name:"sms-webhook" env:"VERITY_SMS_WEBHOOK" help:"URL that receives each SMS as a signed JSON POST (see docs/webhook-sender.md)."`
	SMSWebhookSecret      string        `name:"sms-webhook-secret" env:"VERITY_SMS_WEBHOOK_SECRET" help:"HMAC key shared with the webhook receiver (at least 16 bytes)."`
	SMSWebhookSecretFile  string        `name:"sms-webhook-secret-file" env:"VERITY_SMS_WEBHOOK_SECRET_FILE" help:"File holding the webhook HMAC key."`
	SMSWebhookTimeout     time.Duration `name:"sms-webhook-timeout" default:"5s" env:"VERITY_SMS_WEBHOOK_TIMEOUT" help:"Time limit of one webhook delivery."`
	Dev                   bool          `name:"dev" env:"VERITY_DEV" help:"Development mode: dev account, log sender, GET /dev/messages."`
	DevSink               string        `name:"dev-sink" enum:"log,discard" default:"log" env:"VERITY_DEV_SINK" help:"With --dev and no webhook: log (print messages, keep the last 100 for /dev/messages) or discard (drop them; for benchmarks)."`
	LogFormat             string        `name:"log-format" enum:"json,text," default:"" env:"VERITY_LOG_FORMAT" help:"json or text (default: json, text with --dev)."`
	LogLevel              string        `name:"log-level" enum:"debug,info,warn,error" default:"info" env:"VERITY_LOG_LEVEL" help:"Lowest level logged: debug (the access lines also say what the app decided and the error message a caller got), info (one line per request), warn or error."`
	DebugAddr             string        `name:"debug-addr" env:"VERITY_DEBUG_ADDR" help:"Address of a second listener serving Go's profiler at /debug/pprof/ (off when empty; keep it on localhost)."`
	ShutdownTimeout       time.Duration `name:"shutdown-timeout" default:"20s" env:"VERITY_SHUTDOWN_TIMEOUT" help:"How long in-flight requests may finish on SIGINT/SIGTERM (a second signal stops at once, cutting them)."`
	JanitorInterval       time.Duration `name:"janitor-interval" default:"1m" env:"VERITY_JANITOR_INTERVAL" help:"How often expired PIN history is deleted."`
	ReadHeaderTimeoutFlag time.Duration `name:"read-header-timeout" default:"5s" env:"VERITY_READ_HEADER_TIMEOUT" help:"HTTP server: time limit for request headers."`
	PINHashByPIN          bool          `name:"pin-hash-by-pin" env:"VERITY_PIN_HASH_BY_PIN" help:"Hash new PINs by their id, as releases before user-keyed PIN hashes did, while nodes of such a release still serve the same database (see docs/scaling.md, rolling upgrades)."`
}

// writeTimeout bounds how long the server may take to answer a request. A
// start waits for its SMS delivery, so the webhook's time limit must end
// well within it (maxSendTimeout).
const (
	writeTimeout   = 30 * time.Second
	maxSendTimeout = 25 * time.Second
)

// validate refuses settings that would start a server that cannot work as
// asked: each with one line naming the flag, before anything is created.
func (c *serveCmd) validate() error {
	invalid := func(format string, args ...any) error { return verity.Errorf(verity.EINVALID, format, args...) }
	switch {
	case strings.TrimSpace(c.Addr) == "":
		return invalid("--addr must not be empty (e.g. 127.0.0.1:8080, or :8080 for every interface)")
	case c.DataDir == "" && (c.DB == "" || c.SecretKeyFile == "" || c.SeedKeysFile == ""):
		return invalid("--data-dir must not be empty while it holds the database or a key file")
	case c.ShutdownTimeout <= 0:
		return invalid("--shutdown-timeout must be positive, not %s", c.ShutdownTimeout)
	case c.JanitorInterval <= 0:
		return invalid("--janitor-interval must be positive, not %s", c.JanitorInterval)
	case c.ReadHeaderTimeoutFlag <= 0:
		return invalid("--read-header-timeout must be positive, not %s", c.ReadHeaderTimeoutFlag)
	case c.SMSWebhookTimeout <= 0 || c.SMSWebhookTimeout > maxSendTimeout:
		return invalid("--sms-webhook-timeout must be more than 0 and at most %s (a start answers within %s), not %s",
			maxSendTimeout, writeTimeout, c.SMSWebhookTimeout)
	}
	return nil
}

func (c *serveCmd) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	format := c.LogFormat
	if format == "" && c.Dev {
		format = "text"
	}
	// LogHandler: what the app logs while serving a request names its id.
	log := slog.New(httpapi.LogHandler(newLogger(os.Stderr, format, c.LogLevel).Handler()))

	sender, devMessages, err := c.sender()
	if err != nil {
		return err
	}
	// A start waits for its SMS for up to --sms-webhook-timeout; a drain
	// that ends first cuts it unanswered (docs/webhook-sender.md, Timeout).
	// Said, not refused: such settings worked before and may be meant.
	if c.SMSWebhook != "" && c.ShutdownTimeout <= c.SMSWebhookTimeout {
		log.Warn("--shutdown-timeout is not above --sms-webhook-timeout: a drain may cut starts still waiting for their SMS",
			"shutdown_timeout", c.ShutdownTimeout.String(), "sms_webhook_timeout", c.SMSWebhookTimeout.String())
	}
	keys, err := c.loadKeys()
	if err != nil {
		return err
	}
	seeds, err := c.loadSeedKeys()
	if err != nil {
		return err
	}
	store, err := c.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer store.Close()
	tuneGC()

	a := app.New(store, sender, keys, log)
	// The app's own bound on a delivery must not cut a webhook short that
	// --sms-webhook-timeout allows more time.
	a.SendTimeout = max(a.SendTimeout, c.SMSWebhookTimeout)
	a.Seeds = seeds
	a.PINHashByPIN = c.PINHashByPIN
	var dev devAccount
	if c.Dev {
		if dev, err = ensureDevAccount(ctx, a); err != nil {
			return err
		}
	}
	api := httpapi.NewServer(a, log)
	if devMessages != nil {
		api.DevMessages = devMessages
	}

	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	// inFlight counts the requests being handled, so that a drain cut
	// short can say how many it cut.
	var inFlight atomic.Int64
	srv := &http.Server{
		Handler:           countInFlight(api.Handler(), &inFlight),
		ReadHeaderTimeout: c.ReadHeaderTimeoutFlag,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      writeTimeout, // above the SMS send timeout: a start waits for delivery
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}

	janitorCtx, stopJanitor := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJanitor()
	go a.RunJanitor(janitorCtx, c.JanitorInterval)

	if c.Dev {
		// Only now is there an address to try, and the one bound (a port
		// of 0 is chosen here; ":8080" is every interface, not a host).
		// Before the server answers anything: a script that polls
		// /healthz and then reads the credentials finds them written.
		dev.announce(os.Stderr, baseURL(ln.Addr()))
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("verity listening", "addr", ln.Addr().String(), "dev", c.Dev, "version", version())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// A second SIGINT or SIGTERM during the drain stops it at once: the
	// operator pressing Ctrl-C again should not have to wait up to
	// --shutdown-timeout. Listening only from here, the first signal is not
	// counted twice.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	log.Info("shutting down: finishing in-flight requests", "timeout", c.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(shutdownCtx) }()
	select {
	case err := <-drained:
		if errors.Is(err, context.DeadlineExceeded) {
			// Shutdown leaves the connections it did not drain open; close
			// them rather than leave them to the exit, and say so.
			n := inFlight.Load()
			srv.Close()
			log.Warn("drain timed out: stopped, requests in flight were cut", "timeout", c.ShutdownTimeout.String(), "in_flight", n)
			return fmt.Errorf("the drain timed out after %s (--shutdown-timeout): requests in flight were cut (%d)", c.ShutdownTimeout, n)
		}
		if err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	case sig := <-again:
		n := inFlight.Load()
		srv.Close() // closes every connection, active ones too
		log.Warn("second signal during the drain: stopped at once, requests in flight were cut", "signal", sig.String(), "in_flight", n)
		return fmt.Errorf("a second signal (%s) stopped the drain: requests in flight were cut (%d)", sig, n)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// countInFlight returns h counting in n the requests it is handling.
func countInFlight(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// sender picks the delivery: the webhook when configured, else the log
// sink, which only development mode may use.
func (c *serveCmd) sender() (verity.Sender, http.Handler, error) {
	if c.SMSWebhook != "" {
		secret := c.SMSWebhookSecret
		if c.SMSWebhookSecretFile != "" {
			b, err := os.ReadFile(c.SMSWebhookSecretFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read webhook secret: %w", err)
			}
			secret = strings.TrimSpace(string(b))
		}
		if secret == "" {
			return nil, nil, errors.New("--sms-webhook needs --sms-webhook-secret or --sms-webhook-secret-file (the key that signs each delivery)")
		}
		s, err := webhook.New(webhook.Config{URL: c.SMSWebhook, Secret: []byte(secret), Timeout: c.SMSWebhookTimeout})
		if err != nil {
			return nil, nil, fmt.Errorf("sms webhook: %s", verity.ErrorMessage(err))
		}
		return s, nil, nil
	}
	if !c.Dev {
		return nil, nil, errors.New("no SMS delivery configured: pass --sms-webhook URL, or --dev to print messages (development only)")
	}
	if c.DevSink == "discard" {
		return &discard.Sender{}, nil, nil
	}
	s := logsender.New(os.Stdout, logsender.DefaultKeep)
	return s, s.Handler(), nil
}

// devAccount is the development account, for the banner.
type devAccount struct {
	username, password string
	created, matches   bool
}

// ensureDevAccount creates the development account on first use.
func ensureDevAccount(ctx context.Context, a *app.App) (devAccount, error) {
	var d devAccount
	var err error
	d.username, d.password, d.created, d.matches, err = a.EnsureDevAccount(ctx)
	return d, err
}

// announce prints the development banner; base is the server's URL.
func (d devAccount) announce(w io.Writer, base string) {
	fmt.Fprintln(w, "==================== VERITY DEVELOPMENT MODE ====================")
	fmt.Fprintln(w, "Messages are printed here, not delivered. Never use --dev in production.")
	switch {
	case !d.matches:
		fmt.Fprintf(w, "An account named %q exists with another password; use its own credentials.\n", d.username)
	default:
		if d.created {
			fmt.Fprintf(w, "Created development account %q.\n", d.username)
		}
		fmt.Fprintf(w, "API credentials (X-Service-Auth):\n  export VERITY_AUTH='%s:%s'\n", d.username, d.password)
		fmt.Fprintf(w, "Recent messages: curl %s/dev/messages\n", base)
	}
	fmt.Fprintln(w, "=================================================================")
}

// baseURL is an http:// URL for a listener's address that a browser or curl
// on this machine can open: a listener on every interface (0.0.0.0, ::) is
// reached through the loopback address.
func baseURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "localhost" // "::": 127.0.0.1 works only while the socket is dual-stack
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// serveDebug serves the profiler on its own listener, apart from the API,
// so that it is never reachable through the API's address.
func serveDebug(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	// No /debug/pprof/cmdline: the command line may hold the webhook secret
	// or a postgres:// URL's password. (pprof.Index answers it 404.)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	log.Info("profiler listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// defaultGCPercent replaces Go's default GOGC of 100 for the server. Verity's
// live heap is a few MB, so at 100 the collector runs several times a second
// under load; at 400 the heap peaks near 50 MB and a check costs about 16 %
// less CPU (bench, check scenario: 263 → 222 µs per check). GOGC in the
// environment still wins.
const defaultGCPercent = 400

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
