package postgres_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

// appliedVersions returns how often each version is recorded as applied.
func appliedVersions(t *testing.T, url string) map[int64]int {
	t.Helper()
	ctx := context.Background()
	conn := mustConnect(t, url)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT version_id, count(*) FROM goose_db_version WHERE is_applied GROUP BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]int{}
	for rows.Next() {
		var v int64
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		got[v] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// knownVersions is every migration in migrations/, each applied once.
func knownVersions(t *testing.T) map[int64]int {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{0: 1} // goose's own starting row
	for _, e := range entries {
		var v int64
		for _, c := range strings.SplitN(e.Name(), "_", 2)[0] {
			v = v*10 + int64(c-'0')
		}
		want[v] = 1
	}
	return want
}

func TestMigrate(t *testing.T) {
	testURL(t)
	ctx := context.Background()

	t.Run("migrating twice is a no-op", func(t *testing.T) {
		url := createDatabase(t, false)
		db := mustOpen(t, url, postgres.Options{})
		for i := range 2 {
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("Migrate #%d = %v", i+1, err)
			}
		}
		if diff := cmp.Diff(knownVersions(t), appliedVersions(t, url)); diff != "" {
			t.Fatalf("applied versions (-want +got):\n%s", diff)
		}
		if err := db.CheckSchema(ctx); err != nil {
			t.Fatalf("CheckSchema = %v", err)
		}
	})

	t.Run("five nodes migrating one fresh database at once apply each migration once", func(t *testing.T) {
		url := createDatabase(t, false)
		migrateConcurrently(t, url, url, postgres.Options{})
	})

	t.Run("a schema newer than the binary is refused by Migrate and CheckSchema", func(t *testing.T) {
		url := createDatabase(t, false)
		db := mustOpen(t, url, postgres.Options{})
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		conn := mustConnect(t, url)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, true)`); err != nil {
			t.Fatal(err)
		}
		const want = "database schema version 9999 is newer than this binary understands"
		for name, err := range map[string]error{"Migrate": db.Migrate(ctx), "CheckSchema": db.CheckSchema(ctx)} {
			if err == nil || !strings.Contains(err.Error(), want) || !strings.HasSuffix(err.Error(), ": upgrade verity") {
				t.Errorf("%s = %v; want %q … upgrade verity", name, err, want)
			}
		}
	})

	t.Run("an unmigrated database fails CheckSchema", func(t *testing.T) {
		db := mustOpen(t, createDatabase(t, false), postgres.Options{})
		err := db.CheckSchema(ctx)
		if err == nil || !strings.Contains(err.Error(), "older than this binary") {
			t.Fatalf("CheckSchema = %v, want the schema reported older", err)
		}
	})
}

// migrateConcurrently migrates the database at url from five pools at once,
// as five nodes starting together would, and checks that every migration
// was applied once and left a working schema. direct reaches the same
// database without a pooler, for reading goose's table.
func migrateConcurrently(t *testing.T, direct, url string, opts postgres.Options) {
	ctx := context.Background()
	const nodes = 5
	dbs := make([]*postgres.DB, nodes)
	for i := range dbs {
		dbs[i] = mustOpen(t, url, opts) // a pool each, as separate nodes have
	}
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i, db := range dbs {
		wg.Go(func() {
			<-release
			errs[i] = db.Migrate(ctx)
		})
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: Migrate = %v", i, err)
		}
	}
	if diff := cmp.Diff(knownVersions(t), appliedVersions(t, direct)); diff != "" {
		t.Fatalf("applied versions (-want +got):\n%s", diff)
	}
	for i, db := range dbs {
		if err := db.CheckSchema(ctx); err != nil {
			t.Errorf("node %d: CheckSchema = %v", i, err)
		}
	}
	// The schema works: a user can be created and sent a PIN.
	s := dbs[0]
	now := time.Now()
	a := &verity.Account{ID: "a1", Username: "acme", SecretHash: []byte{1}, CreatedAt: now}
	svc := &verity.Service{ID: "s1", AccountID: a.ID, Name: "Acme", FQDN: "acme.example", Settings: verity.DefaultSettings(), CreatedAt: now}
	u := &verity.User{ID: "u1", ServiceID: svc.ID, IDInService: "alice", Phone: "+3725555555", CreatedAt: now}
	for _, err := range []error{s.CreateAccount(ctx, a), s.CreateService(ctx, svc), s.CreateUser(ctx, u)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, err := s.StartPIN(ctx, start(u, "p1", now)); err != nil || !st.Started {
		t.Fatalf("StartPIN on the migrated schema = %+v, %v", st, err)
	}
}
