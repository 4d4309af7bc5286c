package main_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// closedPort returns a local TCP port nothing listens on.
func closedPort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return strconv.Itoa(port)
}

// TestUnreachablePostgreSQLShowsTheCauseButNoPassword: a command that
// cannot reach PostgreSQL says why (the connection was refused), not only
// "database unavailable", and the URL's password shows nowhere, however it
// was given.
func TestUnreachablePostgreSQLShowsTheCauseButNoPassword(t *testing.T) {
	port := closedPort(t)
	for _, tc := range []struct {
		name, url string
		secrets   []string
	}{
		{"a password in the user info", "postgres://verity:Tr0ub4dor3x@127.0.0.1:" + port + "/verity?sslmode=disable",
			[]string{"Tr0ub4dor3x"}},
		{"a percent-encoded password", "postgres://verity:Tr0ub%2F4dor%403x@127.0.0.1:" + port + "/verity?sslmode=disable",
			[]string{"Tr0ub%2F4dor%403x", "Tr0ub/4dor@3x"}},
		{"a password as a parameter", "postgres://verity@127.0.0.1:" + port + "/verity?sslmode=disable&password=Tr0ub4dor3x",
			[]string{"Tr0ub4dor3x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runVerity(t, t.TempDir(), "migrate", "--db", tc.url)
			if err == nil {
				t.Fatalf("migrate against a closed port succeeded")
			}
			if !strings.HasPrefix(stderr, "verity: database unavailable: ") || !strings.Contains(stderr, "connection refused") {
				t.Errorf("stderr = %q, want the safe message followed by the cause (connection refused)", stderr)
			}
			for _, s := range tc.secrets {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr shows the password %q: %q", s, stderr)
				}
			}
		})
	}

	t.Run("a password with an unescaped '/' keeps the cause back and says what to escape", func(t *testing.T) {
		// Parsed as a URL, "verity:Tr0ub" is the host and port and
		// "4dor3x@127.0.0.1…" the path: pieces of the password would be
		// named as the host, port or database.
		url := "postgres://verity:Tr0ub/4dor3x@127.0.0.1:" + port + "/verity?sslmode=disable"
		_, stderr, err := runVerity(t, t.TempDir(), "migrate", "--db", url)
		if err == nil {
			t.Fatalf("migrate with an unparsable URL succeeded")
		}
		if !strings.Contains(stderr, "percent-encode") {
			t.Errorf("stderr = %q, want a hint to percent-encode the password", stderr)
		}
		for _, s := range []string{"Tr0ub", "4dor3x"} {
			if strings.Contains(stderr, s) {
				t.Errorf("stderr shows %q, a piece of the password: %q", s, stderr)
			}
		}
	})
}
