package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sqlite"
)

// BenchmarkCheckPIN measures the check path's one store call with many
// concurrent callers, as under HTTP load: each call reads a user and its
// PIN, and counts a wrong try (limits never reached) or consumes the PIN.
//
//	go test -run xxx -bench CheckPIN -cpuprofile cpu.prof ./sqlite
func BenchmarkCheckPIN(b *testing.B) {
	for _, v := range []struct {
		name    string
		verdict verity.PINVerdict
	}{{"wrong code", verity.CountIt}, {"right code", verity.ConsumeIt}} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			db := MustOpenDB(b)
			defer db.Close()
			const users = 2000
			now := time.Now().UTC()
			acct := &verity.Account{ID: uuid.NewString(), Username: "bench", SecretHash: []byte("x"), CreatedAt: now}
			svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "Bench", FQDN: "bench.example.com",
				Settings: verity.DefaultSettings(), CreatedAt: now}
			if err := db.CreateAccount(ctx, acct); err != nil {
				b.Fatal(err)
			}
			if err := db.CreateService(ctx, svc); err != nil {
				b.Fatal(err)
			}
			ids := make([]string, users)
			for i := range ids {
				u := &verity.User{ID: uuid.NewString(), ServiceID: svc.ID, IDInService: fmt.Sprint("u", i),
					Phone: fmt.Sprintf("+3725%07d", i), PhoneType: "MOBILE", CreatedAt: now}
				if err := db.CreateUser(ctx, u); err != nil {
					b.Fatal(err)
				}
				p := verity.PIN{ID: uuid.NewString(), UserID: u.ID, Hash: []byte("h"), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
				st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID, PIN: p, SendWindowStart: now, MaxSends: 1 << 30,
					ResendNotBefore: now, FailureWindowStart: now, FailureLimit: 1 << 30})
				if err != nil || !st.Started {
					b.Fatal("StartPIN", st, err)
				}
				ids[i] = u.ID
			}
			judge := func(*verity.User, *verity.PIN) verity.PINVerdict { return v.verdict }
			var next atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) % users
					_, err := db.CheckPIN(ctx, verity.PINCheck{ServiceID: svc.ID, UserID: ids[i], Judge: judge,
						Now: now, MaxAttempts: 1 << 30, FailureWindowStart: now.Add(-time.Hour), FailureLimit: 1 << 30})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkStartPIN measures the start path's one store call with many
// concurrent callers, as under HTTP load, with --sqlite-sync normal: each
// call reads the user, its sends inside the window and its newest PIN, and
// inserts a PIN. Every user already has a few sends in the window, as a
// user who asked again for a code has.
//
//	go test -run xxx -bench StartPIN -cpuprofile cpu.prof ./sqlite
func BenchmarkStartPIN(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.OpenWith(filepath.Join(b.TempDir(), "verity.db"), sqlite.Options{Sync: sqlite.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	const users, history = 20000, 3
	now := time.Now().UTC()
	acct := &verity.Account{ID: uuid.NewString(), Username: "bench", SecretHash: []byte("x"), CreatedAt: now}
	svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "Bench", FQDN: "bench.example.com",
		Settings: verity.DefaultSettings(), CreatedAt: now}
	if err := db.CreateAccount(ctx, acct); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateService(ctx, svc); err != nil {
		b.Fatal(err)
	}
	start := func(userID string, at time.Time) error {
		p := verity.PIN{ID: uuid.Must(uuid.NewV7()).String(), UserID: userID, Hash: []byte("h"), CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
		st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID, PIN: p, SendWindowStart: now.Add(-time.Hour),
			MaxSends: 1 << 30, ResendNotBefore: at, FailureWindowStart: now, FailureLimit: 1 << 30})
		if err == nil && !st.Started {
			err = fmt.Errorf("StartPIN refused: %+v", st.Seen)
		}
		return err
	}
	us := make([]*verity.User, users)
	for i := range us {
		us[i] = &verity.User{ID: uuid.Must(uuid.NewV7()).String(), ServiceID: svc.ID, IDInService: fmt.Sprint("u", i),
			Phone: fmt.Sprintf("+3725%07d", i), PhoneType: "MOBILE", CreatedAt: now}
	}
	if err := db.CreateUsers(ctx, us); err != nil {
		b.Fatal(err)
	}
	for h := range history {
		for _, u := range us {
			if err := start(u.ID, now.Add(time.Duration(h-history)*time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := start(us[next.Add(1)%users].ID, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
