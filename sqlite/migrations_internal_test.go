package sqlite

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
)

// pinIndexes lists the indexes of the pins table, and whether each is unique.
func pinIndexes(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	rows, err := db.writer.Query(`SELECT name, "unique" FROM pragma_index_list('pins')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		var unique bool
		if err := rows.Scan(&name, &unique); err != nil {
			t.Fatal(err)
		}
		out[name] = unique
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrationDropsThePINIdIndex upgrades a database of schema 4, whose
// pins have a unique index on their ids, and downgrades it again: every
// PIN survives each step with its seq, the other two indexes stay, and the
// AUTOINCREMENT counter carries over, so a PIN deleted before the upgrade
// does not see its seq given again.
func TestMigrationDropsThePINIdIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	db, p := openAtSchema(t, 4)
	acct, svc, user := uuid.NewString(), uuid.NewString(), uuid.NewString()
	pins := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO accounts (id, username, secret_hash, created_at) VALUES (?, 'acme', x'01', 1)`, []any{acct}},
		{`INSERT INTO services (id, account_id, name, fqdn, settings, created_at) VALUES (?, ?, 'Acme', 'x', '{}', 1)`, []any{svc, acct}},
		{`INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at) VALUES (?, ?, 'alice', '+3725555555', 'MOBILE', 1)`, []any{user, svc}},
		{`INSERT INTO pins (id, user_id, hash, created_at, expires_at, attempts) VALUES (?, ?, x'0102', ?, ?, 2)`, []any{pins[0], user, micros(now), micros(now.Add(time.Hour))}},
		{`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES (?, ?, x'0304', ?, ?)`, []any{pins[1], user, micros(now.Add(time.Minute)), micros(now.Add(time.Hour))}},
		{`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES (?, ?, x'0506', ?, ?)`, []any{pins[2], user, micros(now.Add(2 * time.Minute)), micros(now.Add(time.Hour))}},
		{`DELETE FROM pins WHERE id = ?`, []any{pins[2]}}, // seq 3 is gone, and must stay unused
	} {
		if _, err := db.writer.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	type row struct {
		seq      int64
		id       string
		attempts int
	}
	contents := func(step string) []row {
		t.Helper()
		rows, err := db.writer.Query(`SELECT seq, id, attempts FROM pins ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.id, &r.attempts); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if want := []row{{1, pins[0], 2}, {2, pins[1], 0}}; !slices.Equal(out, want) {
			t.Fatalf("%s: pins holds %v, want %v", step, out, want)
		}
		return out
	}
	contents("at schema 4")

	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	contents("after the upgrade")
	if got := pinIndexes(t, db); !maps.Equal(got, map[string]bool{"pins_user_seq": false, "pins_created": false}) {
		t.Fatalf("after the upgrade pins has the indexes %v (name: unique), want pins_user_seq and pins_created, neither unique", got)
	}
	pending, err := db.PendingPIN(ctx, user)
	if err != nil || pending.ID != pins[1] {
		t.Fatalf("PendingPIN = %+v, %v; want %s", pending, err, pins[1])
	}
	// The next PIN gets seq 4: a check that read PIN 3's seq before the
	// upgrade cannot land on a new PIN.
	st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc, MaxSends: 10,
		PIN:             verity.PIN{ID: uuid.NewString(), UserID: user, Hash: []byte{7}, CreatedAt: now.Add(3 * time.Minute), ExpiresAt: now.Add(time.Hour)},
		SendWindowStart: now.Add(-time.Hour), ResendNotBefore: now.Add(3 * time.Minute), FailureWindowStart: now.Add(-time.Hour), FailureLimit: 10})
	if err != nil || !st.Started {
		t.Fatalf("StartPIN after the upgrade = %+v, %v", st, err)
	}
	var newest int64
	if err := db.writer.QueryRow(`SELECT max(seq) FROM pins`).Scan(&newest); err != nil || newest != 4 {
		t.Fatalf("the first PIN after the upgrade has seq %d (%v), want 4", newest, err)
	}

	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := pinIndexes(t, db); !maps.Equal(got, map[string]bool{"pins_user_seq": false, "pins_created": false, "sqlite_autoindex_pins_1": true}) {
		t.Fatalf("after the downgrade pins has the indexes %v, want the unique one on ids back", got)
	}
	if _, err := db.writer.Exec(`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES (?, ?, x'08', 1, 2)`, pins[0], user); err == nil {
		t.Fatal("after the downgrade a second PIN with an existing id was accepted")
	}
	if _, err := db.writer.Exec(`INSERT INTO pins (id, user_id, hash, created_at, expires_at) VALUES (?, ?, x'08', 1, 2)`, uuid.NewString(), user); err != nil {
		t.Fatal(err)
	}
	if err := db.writer.QueryRow(`SELECT max(seq) FROM pins`).Scan(&newest); err != nil || newest != 5 {
		t.Fatalf("the first PIN after the downgrade has seq %d (%v), want 5", newest, err)
	}
}
