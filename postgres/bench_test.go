package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/postgres"
)

// The benchmarks measure one call's cost on an uncontended row over a
// loopback connection: mostly round trips, which is what they are about.

// BenchmarkConsumePIN consumes a fresh PIN each iteration (the path that
// wins), on b.N users whose PINs are bulk-loaded before the clock starts.
func BenchmarkConsumePIN(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, postgres.Options{})
	conn := mustConnect(b, f.url)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
		INSERT INTO users (id, service_id, id_in_service, phone, phone_type, created_at)
		SELECT 'bu' || i, $1, 'bench' || i, '+3725555555', 'MOBILE', $2 FROM generate_series(1, $3::int) i`,
		f.service.ID, t0, b.N); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `
		INSERT INTO pins (id, user_id, hash, created_at, expires_at)
		SELECT 'bp' || i, 'bu' || i, '\x00', $1, $2 FROM generate_series(1, $3::int) i`,
		t0, t0.Add(time.Hour), b.N); err != nil {
		b.Fatal(err)
	}
	conn.Exec(ctx, `ANALYZE`)
	c := verity.PINConsume{Now: t0.Add(time.Second), MaxAttempts: 5, FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 10}
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		c.PINID, c.UserID = fmt.Sprint("bp", i), fmt.Sprint("bu", i)
		if ok, err := f.db.ConsumePIN(ctx, c); err != nil || !ok {
			b.Fatalf("ConsumePIN = %v, %v", ok, err)
		}
	}
}

// BenchmarkCountFailedTry counts a wrong try against a PIN and its user each
// iteration (one statement), with limits high enough that
// every try counts.
func BenchmarkCountFailedTry(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, postgres.Options{})
	if st, err := f.db.StartPIN(ctx, start(f.user, "p1", t0)); err != nil || !st.Started {
		b.Fatalf("StartPIN = %+v, %v", st, err)
	}
	try := verity.FailedTry{PINID: "p1", UserID: f.user.ID, Now: t0, MaxAttempts: 1 << 30,
		FailureWindowStart: t0.Add(-time.Hour), FailureLimit: 1 << 30}
	b.ResetTimer()
	for range b.N {
		if ok, err := f.db.CountFailedTry(ctx, try); err != nil || !ok {
			b.Fatalf("CountFailedTry = %v, %v", ok, err)
		}
	}
}

// BenchmarkPendingPIN reads the pending PIN: the hot read of every check.
func BenchmarkPendingPIN(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b, postgres.Options{})
	if st, err := f.db.StartPIN(ctx, start(f.user, "p1", t0)); err != nil || !st.Started {
		b.Fatalf("StartPIN = %+v, %v", st, err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := f.db.PendingPIN(ctx, f.user.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckPIN checks a wrong code against one PIN each iteration, as a
// check makes it: with the typed code's hash, one statement that reads,
// compares and counts; without it, a read and then the counting statement.
// Limits are high enough that every try counts.
func BenchmarkCheckPIN(b *testing.B) {
	for _, bc := range []struct {
		name     string
		withHash bool
	}{{"one statement", true}, {"read then write", false}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			f := newFixture(b, postgres.Options{})
			p := start(f.user, "p1", t0)
			p.PIN.Hash = codeHash(7)
			if st, err := f.db.StartPIN(ctx, p); err != nil || !st.Started {
				b.Fatalf("StartPIN = %+v, %v", st, err)
			}
			wrong := codeHash(8)
			c := hashCheck(f, t0.Add(time.Second), wrong, byHash(wrong))
			c.MaxAttempts, c.FailureLimit = 1<<30, 1<<30
			if !bc.withHash {
				c.CodeHash = nil
			}
			b.ResetTimer()
			for range b.N {
				if out, err := f.db.CheckPIN(ctx, c); err != nil || !out.Applied {
					b.Fatalf("CheckPIN = %+v, %v", out, err)
				}
			}
		})
	}
}
