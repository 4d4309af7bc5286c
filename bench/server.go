package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a child process the benchmark started: a Verity server or the
// HTTP ceiling server.
type process struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	base   string // http://127.0.0.1:<port>
	exited chan struct{}
	err    error // set when exited is closed

	mu    sync.Mutex
	auth  string   // from the dev-mode banner
	lines []string // the last lines of its output, for error messages
}

// authPattern finds the credentials `serve --dev` prints on stderr.
var authPattern = regexp.MustCompile(`export VERITY_AUTH='([^']+)'`)

// startProcess starts bin with args, listening on addr, and waits until
// GET /healthz answers 200. The child gets its own process group (a Ctrl-C
// reaches only the benchmark, which then stops it in order) and is killed
// by the kernel if the benchmark dies first.
func startProcess(ctx context.Context, name, bin, addr string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, pid: cmd.Process.Pid, base: "http://" + addr, exited: make(chan struct{})}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.readOutput(r)
		}()
	}
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitHealthy(ctx, 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// readOutput keeps the last lines of r and picks up the dev credentials.
func (p *process) readOutput(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if m := authPattern.FindStringSubmatch(line); m != nil {
			p.auth = m[1]
		}
		p.lines = append(p.lines, line)
		if len(p.lines) > 30 {
			p.lines = p.lines[1:]
		}
		p.mu.Unlock()
	}
}

// output returns the last lines the process printed.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// credentials returns the X-Service-Auth value the dev banner printed.
func (p *process) credentials() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auth
}

// waitCredentials returns the dev credentials once the output reader has
// read them, waiting up to limit: Verity writes them before it answers
// /healthz, but the goroutine reading its stderr may not have reached them
// when waitHealthy returns (a run once failed so). "" when they never came.
func (p *process) waitCredentials(limit time.Duration) string {
	deadline := time.Now().Add(limit)
	for {
		if auth := p.credentials(); auth != "" || time.Now().After(deadline) {
			return auth
		}
		select {
		case <-p.exited:
			return p.credentials()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitHealthy polls /healthz until it answers 200, the process exits or
// the time limit passes.
func (p *process) waitHealthy(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start (%v):\n%s", p.name, p.err, p.output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("%s did not answer /healthz within %v:\n%s", p.name, limit, p.output())
}

// stop asks the process to shut down (SIGINT, which Verity answers with a
// graceful shutdown) and kills it if it has not exited within 15 s.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		return nil
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop on SIGINT within 15 s: killed", p.name)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// buildVerity compiles the real server, without -race, into dir.
func buildVerity(ctx context.Context, moduleDir, dir string) (string, error) {
	bin := dir + "/verity"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/verity")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/verity: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the benchmark from inside the Verity module (go run ./bench)")
	}
	return strings.TrimSuffix(gomod, "/go.mod"), nil
}

// ceilingServerCommand is the hidden subcommand that serves the HTTP ceiling.
const ceilingServerCommand = "ceiling-server"

// ceilingBody is the ceiling server's answer: the size and shape of a
// check's answer.
const ceilingBody = `{"method":"sms","verified":true,"status":{"throttled":false,"expired":false,"invalid":false,"result":"VERIFIED"}}` + "\n"

// runCeilingServer is the HTTP ceiling: the least a Go net/http server can
// do per request (read the body, answer a small JSON object), in its own
// process like Verity. It runs until SIGINT or SIGTERM.
func runCeilingServer(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, ceilingBody)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	ctx, stop := signalContext()
	defer stop()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
