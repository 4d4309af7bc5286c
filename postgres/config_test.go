package postgres

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity"
)

// These need no server: they check how Open reads its options.
func TestPoolConfig(t *testing.T) {
	const url = "postgres://verity@db.example/verity"
	for _, c := range []struct {
		name     string
		conn     string
		opts     Options
		maxConns int32
		minConns int32
		connect  time.Duration
		lifetime time.Duration
		idle     time.Duration
		mode     pgx.QueryExecMode
	}{
		{"the zero Options give the documented defaults", url, Options{},
			int32(4 * runtime.GOMAXPROCS(0)), 0, 5 * time.Second, time.Hour, 30 * time.Minute, pgx.QueryExecModeCacheStatement},
		{"the connection string's settings stand when Options leave them zero",
			url + "?pool_max_conns=7&pool_min_conns=2&connect_timeout=9&pool_max_conn_lifetime=2h&pool_max_conn_idle_time=1m&default_query_exec_mode=exec",
			Options{}, 7, 2, 9 * time.Second, 2 * time.Hour, time.Minute, pgx.QueryExecModeExec},
		{"Options override the connection string",
			url + "?pool_max_conns=7&connect_timeout=9&default_query_exec_mode=exec",
			Options{MaxConns: 3, MinConns: 1, ConnectTimeout: time.Second, MaxConnLifetime: time.Minute,
				MaxConnIdleTime: time.Second, QueryExecMode: pgx.QueryExecModeCacheDescribe},
			3, 1, time.Second, time.Minute, time.Second, pgx.QueryExecModeCacheDescribe},
		{"key=value strings work too", "host=db.example user=verity pool_max_conns=5", Options{},
			5, 0, 5 * time.Second, time.Hour, 30 * time.Minute, pgx.QueryExecModeCacheStatement},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := poolConfig(c.conn, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				what      string
				got, want any
			}{
				{"MaxConns", cfg.MaxConns, c.maxConns},
				{"MinConns", cfg.MinConns, c.minConns},
				{"ConnectTimeout", cfg.ConnConfig.ConnectTimeout, c.connect},
				{"MaxConnLifetime", cfg.MaxConnLifetime, c.lifetime},
				{"MaxConnIdleTime", cfg.MaxConnIdleTime, c.idle},
				{"DefaultQueryExecMode", cfg.ConnConfig.DefaultQueryExecMode, c.mode},
				{"application_name", cfg.ConnConfig.RuntimeParams["application_name"], "verity"},
			} {
				if f.got != f.want {
					t.Errorf("%s = %v, want %v", f.what, f.got, f.want)
				}
			}
		})
	}
	t.Run("MinConns above MaxConns is refused", func(t *testing.T) {
		if _, err := poolConfig(url, Options{MaxConns: 2, MinConns: 3}); err == nil {
			t.Fatal("poolConfig succeeded")
		}
	})
	t.Run("a parse error does not show the password", func(t *testing.T) {
		_, err := poolConfig("postgres://verity:hunter2@db.example:notaport/verity", Options{})
		if err == nil {
			t.Fatal("poolConfig succeeded")
		}
		if s := err.Error(); strings.Contains(s, "hunter2") {
			t.Fatalf("error %q shows the password", s)
		}
	})
}

func TestOpenUnreachable(t *testing.T) {
	// Port 1 on the loopback refuses at once: Open must fail, as unavailable.
	_, err := Open(context.Background(), "postgres://verity@127.0.0.1:1/verity?sslmode=disable", Options{})
	if got := verity.ErrorCode(err); got != verity.EUNAVAILABLE {
		t.Fatalf("Open(unreachable) = %v (%s), want EUNAVAILABLE", err, got)
	}
}
