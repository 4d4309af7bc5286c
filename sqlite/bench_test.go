package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
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
			svc := benchService(b, db, now)
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
// call reads the user, its sends inside the window and its newest PIN,
// inserts a PIN and prunes the send that left the window. Users start a
// minute apart in a three-minute window, so each has two sends in it and
// one to prune at every start, whatever b.N. Ids are UUIDv7s, as the app
// makes them.
//
//	go test -run xxx -bench StartPIN -benchtime 100000x -cpuprofile cpu.prof ./sqlite
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
	const users, history, callers = 20000, 3, 64
	now := time.Now().UTC()
	svc := benchService(b, db, now)
	us := make([]*verity.User, users)
	for i := range us {
		us[i] = &verity.User{ID: uuid.Must(uuid.NewV7()).String(), ServiceID: svc.ID, IDInService: fmt.Sprint("u", i),
			Phone: fmt.Sprintf("+3725%07d", i), PhoneType: "MOBILE", CreatedAt: now}
	}
	if err := db.CreateUsers(ctx, us); err != nil {
		b.Fatal(err)
	}
	// start starts the n-th send overall: user n % users, in round n / users.
	start := func(n int64) error {
		u, at := us[n%users], now.Add(time.Duration(n/users)*time.Minute)
		p := verity.PIN{ID: uuid.Must(uuid.NewV7()).String(), UserID: u.ID, Hash: []byte("h"), CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
		st, err := db.StartPIN(ctx, verity.PINStart{ServiceID: svc.ID, PIN: p, SendWindowStart: at.Add(-history * time.Minute),
			MaxSends: 1 << 30, ResendNotBefore: at, FailureWindowStart: at, FailureLimit: 1 << 30})
		if err == nil && !st.Started {
			err = fmt.Errorf("StartPIN refused: %+v", st.Seen)
		}
		return err
	}
	var next atomic.Int64
	// The history, round by round (a user's sends must come in order), by
	// many callers at once so that they share commits.
	for round := range int64(history) {
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				for n := next.Add(1) - 1; n < (round+1)*users; n = next.Add(1) - 1 {
					if err := start(n); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		next.Store((round + 1) * users)
	}
	b.SetParallelism(callers / 2) // GOMAXPROCS is 2 here: 64 callers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := start(next.Add(1) - 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchService creates an account and a service with the default settings.
func benchService(b *testing.B, db *sqlite.DB, now time.Time) *verity.Service {
	b.Helper()
	ctx := context.Background()
	acct := &verity.Account{ID: uuid.NewString(), Username: "bench", SecretHash: []byte("x"), CreatedAt: now}
	svc := &verity.Service{ID: uuid.NewString(), AccountID: acct.ID, Name: "Bench", FQDN: "bench.example.com",
		Settings: verity.DefaultSettings(), CreatedAt: now}
	if err := db.CreateAccount(ctx, acct); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateService(ctx, svc); err != nil {
		b.Fatal(err)
	}
	return svc
}
