package main_test

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestAccountCommands(t *testing.T) {
	dir := t.TempDir()
	auth := createAccount(t, dir, "acme")
	user, password, _ := strings.Cut(auth, ":")

	t.Run("the password is a 256-bit secret and only its keyed hash is stored", func(t *testing.T) {
		if user != "acme" || len(password) < 43 {
			t.Fatalf("credentials %q:%d chars, want acme and ≥ 43 base64 characters", user, len(password))
		}
		db, err := os.ReadFile(filepath.Join(dir, "verity-data", "verity.db"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(db), password) {
			t.Fatal("the database file contains the password")
		}
	})
	t.Run("the generated secret key and seed keyring are private to the owner", func(t *testing.T) {
		for _, name := range []string{"secret.key", "seed-keys.json"} {
			st, err := os.Stat(filepath.Join(dir, "verity-data", name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("%s mode = %v, want 0600", name, st.Mode().Perm())
			}
		}
		st, _ := os.Stat(filepath.Join(dir, "verity-data"))
		if st.Mode().Perm()&fs.ModePerm&0o077 != 0 {
			t.Fatalf("verity-data mode = %v, want no group/other access", st.Mode().Perm())
		}
	})
	t.Run("a taken name is refused with a clear message", func(t *testing.T) {
		_, stderr, err := runVerity(t, dir, "account", "create", "acme")
		if err == nil || !strings.Contains(stderr, "already exists") {
			t.Fatalf("duplicate account create = %v, %q", err, stderr)
		}
	})
	t.Run("list shows accounts without secrets, delete removes one", func(t *testing.T) {
		createAccount(t, dir, "beta")
		stdout, _, err := runVerity(t, dir, "account", "list")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Accounts []map[string]string `json:"accounts"`
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list.Accounts) != 2 || strings.Contains(stdout, password) {
			t.Fatalf("account list = %q", stdout)
		}
		if _, stderr, err := runVerity(t, dir, "account", "delete", "beta"); err != nil {
			t.Fatalf("account delete: %v %s", err, stderr)
		}
		stdout, _, _ = runVerity(t, dir, "account", "list")
		if strings.Contains(stdout, "beta") {
			t.Fatalf("beta still listed: %q", stdout)
		}
	})
	t.Run("migrate succeeds on an up-to-date database", func(t *testing.T) {
		if _, stderr, err := runVerity(t, dir, "migrate"); err != nil {
			t.Fatalf("migrate: %v %s", err, stderr)
		}
	})
}

func TestServe(t *testing.T) {
	t.Run("without a sender and without --dev it refuses to start, saying why", func(t *testing.T) {
		_, stderr, err := runVerity(t, t.TempDir(), "serve", "--addr", "127.0.0.1:0")
		if err == nil || !strings.Contains(stderr, "--sms-webhook") {
			t.Fatalf("serve = %v, %q", err, stderr)
		}
	})

	t.Run("settings that cannot work are refused in one line, before anything is created", func(t *testing.T) {
		for _, arg := range []string{
			"--addr=",
			"--data-dir=",
			"--shutdown-timeout=0s",
			"--shutdown-timeout=-1s",
			"--janitor-interval=0s",
			"--janitor-interval=-1m",
			"--read-header-timeout=-5s",
			"--sms-webhook-timeout=0s",
			"--sms-webhook-timeout=26s",
		} {
			flag, _, _ := strings.Cut(arg, "=")
			dir := t.TempDir()
			_, stderr, err := runVerity(t, dir, "serve", "--addr", "127.0.0.1:0", "--dev", arg)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("serve %s = %v, want exit status 1; stderr:\n%s", arg, err, stderr)
			}
			line := strings.TrimSpace(stderr)
			if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "verity: "+flag+" must") {
				t.Fatalf("serve %s: stderr %q, want one line naming %s", arg, stderr, flag)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("serve %s created %d files in its folder before refusing", arg, len(entries))
			}
		}
	})

	t.Run("--dev prints working credentials and serves the flow with /dev/messages", func(t *testing.T) {
		dir := t.TempDir()
		s := startServer(t, dir, "--dev")
		m := regexp.MustCompile(`export VERITY_AUTH='([^']+)'`).FindStringSubmatch(s.Stderr())
		if m == nil {
			t.Fatalf("no credentials printed:\n%s", s.Stderr())
		}
		auth, c := m[1], http.DefaultClient
		status, svc := call(t, c, s.URL, auth, "POST", "/v1/service/service", map[string]any{"name": "Dev", "fqdn": "dev.example"})
		if status != 200 {
			t.Fatalf("create service = %d %v", status, svc)
		}
		sid := svc["id"].(string)
		_, user := call(t, c, s.URL, auth, "POST", "/v1/service/service/"+sid+"/users", map[string]any{"id_in_service": "a", "phone_number": "+3725555555"})
		uid := user["id"].(string)
		if status, _ := call(t, c, s.URL, auth, "POST", "/v1/service/service/"+sid+"/users/"+uid+"/auth", map[string]any{"method": "sms"}); status != 200 {
			t.Fatalf("start = %d", status)
		}
		_, msgs := call(t, c, s.URL, "", "GET", "/dev/messages", nil)
		list, _ := msgs["messages"].([]any)
		if len(list) != 1 {
			t.Fatalf("/dev/messages = %v, want one message", msgs)
		}
		pin := regexp.MustCompile(`\d{6}`).FindString(list[0].(map[string]any)["text"].(string))
		_, res := call(t, c, s.URL, auth, "PUT", "/v1/service/service/"+sid+"/users/"+uid+"/auth", map[string]any{"token": pin})
		if res["verified"] != true {
			t.Fatalf("check = %v", res)
		}
		if strings.Contains(logLinesOnly(s.Stderr()), pin) || strings.Contains(s.Stderr(), "+3725555555") {
			t.Fatalf("the server log holds the PIN or the full phone number:\n%s", s.Stderr())
		}
		// The app's line about the start joins the start's access line.
		var sent, access struct {
			RequestID string `json:"request_id"`
		}
		for _, line := range strings.Split(logLinesOnly(s.Stderr()), "\n") {
			switch {
			case strings.Contains(line, `"msg":"pin sent"`):
				json.Unmarshal([]byte(line), &sent)
			case strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"route":"POST /v1/service/service/{sid}/users/{uid}/auth"`):
				json.Unmarshal([]byte(line), &access)
			}
		}
		if sent.RequestID == "" || sent.RequestID != access.RequestID {
			t.Fatalf("the pin sent line's request_id = %q, the start's access line's = %q: want the same id", sent.RequestID, access.RequestID)
		}
		if err := s.Stop(); err != nil {
			t.Fatalf("graceful stop: %v\n%s", err, s.Stderr())
		}
		if !strings.Contains(s.Stderr(), `"msg":"stopped"`) {
			t.Fatalf("no graceful shutdown logged:\n%s", s.Stderr())
		}

		again := startServer(t, dir, "--dev")
		if m2 := regexp.MustCompile(`export VERITY_AUTH='([^']+)'`).FindStringSubmatch(again.Stderr()); m2 == nil || m2[1] != auth {
			t.Fatalf("a second --dev start printed other credentials:\n%s", again.Stderr())
		}
	})
}

func TestProfilerListener(t *testing.T) {
	const secret = "cmdline-secret-0123456789"
	s := startServer(t, t.TempDir(), "--dev", "--dev-sink", "discard", "--debug-addr", "127.0.0.1:0", "--sms-webhook-secret", secret)
	m := regexp.MustCompile(`"msg":"profiler listening","addr":"([^"]+)"`).FindStringSubmatch(s.Stderr())
	if m == nil {
		t.Fatalf("no profiler address logged:\n%s", s.Stderr())
	}
	resp, err := http.Get("http://" + m[1] + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("profiler index = %d, want 200", resp.StatusCode)
	}
	if status, _ := call(t, http.DefaultClient, s.URL, "", "GET", "/debug/pprof/", nil); status != 404 {
		t.Fatalf("the API address serves the profiler (status %d), want 404", status)
	}

	// The command line may hold secrets (the webhook's, a postgres:// URL's
	// password): the profiler must not show it.
	resp, err = http.Get("http://" + m[1] + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || strings.Contains(string(body), secret) {
		t.Fatalf("/debug/pprof/cmdline = %d %q, want 404 without the command line", resp.StatusCode, body)
	}
}

// logLinesOnly keeps the JSON log lines: the dev banner and the dev SMS
// sink (which prints PINs by design) are not logs.
func logLinesOnly(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "{") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestUsageErrorsTakeOneLine: a misspelt flag or a missing argument is
// answered with one line on stderr that names the mistake and the command's
// help, not the whole usage (75 lines) before it.
func TestUsageErrorsTakeOneLine(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, see string
	}{
		{[]string{"serve", "--bogus"}, "unknown flag --bogus", "verity serve --help"},
		{[]string{"account", "create"}, `expected "<name>"`, "verity account create --help"},
		{[]string{"nosuchcommand"}, "unexpected argument nosuchcommand", "verity --help"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, err := runVerity(t, t.TempDir(), tc.args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit = %v, want a non-zero status", err)
			}
			if stdout != "" {
				t.Errorf("stdout = %d lines, want none:\n%s", strings.Count(stdout, "\n"), stdout)
			}
			line := strings.TrimSuffix(stderr, "\n")
			if strings.Contains(line, "\n") || !strings.HasPrefix(line, "verity: ") ||
				!strings.Contains(line, tc.want) || !strings.Contains(line, tc.see) {
				t.Errorf("stderr = %q, want one line naming %q and %q", stderr, tc.want, tc.see)
			}
		})
	}
}

// TestVersion: --version prints what the toolchain recorded in the binary
// (`go version -m` reads the same): the module version, the git revision and
// a dirty tree when stamped, the Go version; serve's startup line says it too.
func TestVersion(t *testing.T) {
	stdout, stderr, err := runVerity(t, t.TempDir(), "--version")
	if err != nil {
		t.Fatalf("--version: %v %s", err, stderr)
	}
	line := strings.TrimSuffix(stdout, "\n")
	if !strings.HasPrefix(line, "verity ") || strings.Contains(line, "\n") {
		t.Fatalf("--version printed %q, want one line starting with \"verity \"", stdout)
	}
	out, err := exec.Command("go", "version", "-m", verityBin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	goVersion, info, _ := strings.Cut(string(out), "\n") // "<path>: go1.x.y", then the settings
	want := []string{goVersion[strings.LastIndex(goVersion, " ")+1:]}
	for _, l := range strings.Split(info, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			want = append(want, f[2])
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			want = append(want, "revision "+strings.TrimPrefix(f[1], "vcs.revision="))
		case len(f) == 2 && f[0] == "build" && f[1] == "vcs.modified=true":
			want = append(want, "dirty")
		}
	}
	if len(want) < 2 {
		t.Fatalf("go version -m gave no module and Go version:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("--version = %q, want it to hold %q (go version -m: %v)", line, w, want)
		}
	}

	s := startServer(t, t.TempDir(), "--dev", "--dev-sink", "discard")
	var listening struct {
		Version string `json:"version"`
	}
	for _, l := range strings.Split(s.Stderr(), "\n") {
		if strings.Contains(l, `"msg":"verity listening"`) {
			json.Unmarshal([]byte(l), &listening)
		}
	}
	if got := "verity " + listening.Version; got != line {
		t.Errorf("the startup line's version = %q, want %q as --version says", listening.Version, strings.TrimPrefix(line, "verity "))
	}
}

// TestDevBannerNamesTheBoundAddress: the --dev banner is printed once the
// server's socket is bound, and its URL is one that works: the port bound
// (here one the system chose, which no banner printed earlier could know),
// and the loopback host for a listener on every interface (http://:8080
// opens nowhere).
func TestDevBannerNamesTheBoundAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run("--addr "+addr, func(t *testing.T) {
			s := startServer(t, t.TempDir(), "--dev", "--addr", addr)
			m := regexp.MustCompile(`Recent messages: curl (\S+)`).FindStringSubmatch(s.Stderr())
			if m == nil {
				t.Fatalf("no banner URL printed before the listening line:\n%s", s.Stderr())
			}
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
			if m[1] != "http://127.0.0.1:"+port+"/dev/messages" && m[1] != "http://localhost:"+port+"/dev/messages" {
				t.Fatalf("the banner's URL = %s, want http://127.0.0.1:%s/dev/messages or localhost", m[1], port)
			}
			resp, err := http.Get(m[1])
			if err != nil {
				t.Fatalf("GET the banner's URL: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET the banner's URL = %d, want 200", resp.StatusCode)
			}
		})
	}
}
