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

// TestPasswordsInOtherFormsStayHidden: passwords that a postgres:// URL
// in lower case is not the only way to give: a libpq keyword/value string
// (spaces around '=', a quoted value with an escaped quote), an upper-case
// scheme, and a keyword string the shell split into arguments, which kong
// then names in its usage error.
func TestPasswordsInOtherFormsStayHidden(t *testing.T) {
	port := closedPort(t)
	for _, tc := range []struct {
		name    string
		args    []string
		secrets []string
	}{
		{"a keyword string with spaces around '=' that pgx cannot parse",
			[]string{"migrate", "--db", "host=127.0.0.1 password = S3cretPW port=abc"}, []string{"S3cretPW"}},
		{"a keyword string with a quoted password holding a space and an escaped quote",
			[]string{"migrate", "--db", `host=127.0.0.1 password='S3c\'ret PW' port=abc`}, []string{"S3c", "PW"}},
		{"a keyword string's sslpassword",
			[]string{"migrate", "--db", "host=127.0.0.1 sslpassword=K3yPassW0rd port=abc"}, []string{"K3yPassW0rd"}},
		// pgx reads "5432/S3cretPW@127.0.0.1/postgres" as the database name.
		{"an upper-case scheme with an unescaped '/' in the password",
			[]string{"migrate", "--db", "POSTGRES://verity:" + port + "/S3cretPW@127.0.0.1/postgres"}, []string{"S3cretPW"}},
		{"an unquoted keyword string, split by the shell into arguments",
			[]string{"account", "list", "--db", "host=127.0.0.1", "password=S3cretPW"}, []string{"S3cretPW"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runVerity(t, t.TempDir(), tc.args...)
			if err == nil {
				t.Fatalf("%v succeeded, want a failure", tc.args)
			}
			if !strings.HasPrefix(stderr, "verity: ") {
				t.Errorf("stderr = %q, want verity's one-line error", stderr)
			}
			for _, s := range tc.secrets {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr shows %q, (a piece of) the password: %q", s, stderr)
				}
			}
		})
	}
}
