package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
	"github.com/verityhq/verity/internal/storeopen"
	"github.com/verityhq/verity/sqlite"
)

// storeRate is one storage workload's result.
type storeRate struct {
	Ops       int            `json:"ops"`
	Seconds   float64        `json:"seconds"`
	OpsPerSec float64        `json:"ops_per_sec"`
	Errors    int            `json:"errors"`
	Latency   latencySummary `json:"latency"`
}

// storageResult is the storage ceiling: the bare store operations a check
// needs, called in-process with the same concurrency as the HTTP load.
type storageResult struct {
	Backend     string `json:"backend"`
	Concurrency int    `json:"concurrency"`
	Users       int    `json:"users"`
	// CheckPIN is the check scenario's mix (wrong tries, then the right
	// code) made the way a check makes it, one CheckPIN call each: the ceiling.
	CheckPIN  storeRate `json:"check_pin"`
	Consume   storeRate `json:"consume_pin"`      // ConsumePIN on fresh PINs
	FailedTry storeRate `json:"count_failed_try"` // CountFailedTry, always counted
	CheckMix  storeRate `json:"check_mix"`        // the mix as the bare writes, without CheckPIN's read
	FullCheck storeRate `json:"full_check"`       // the mix as a separate read (UserWithPIN), then the write
	// Fsync is how long one 4 KiB write plus fsync takes in the folder
	// SQLite uses: the floor under every acknowledged write.
	Fsync latencySummary `json:"fsync"`
	Note  string         `json:"note,omitempty"`
}

// probeFsync times up to 300 4 KiB writes, each followed by fsync, in dir,
// for at most a second.
func probeFsync(dir string) (latencySummary, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return latencySummary{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	var ds []time.Duration
	deadline := time.Now().Add(time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(block, int64(i%16)*4096); err != nil {
			return latencySummary{}, err
		}
		if err := f.Sync(); err != nil {
			return latencySummary{}, err
		}
		ds = append(ds, time.Since(t0))
	}
	return summarize(ds), nil
}

// openStore opens and migrates a store of the benchmark's backend; a SQLite
// one commits with sync (full or normal), as the servers do.
func openStore(ctx context.Context, dsn string, sync sqlite.Sync) (verity.Store, error) {
	return storeopen.OpenWith(ctx, dsn, storeopen.Options{SQLite: sqlite.Options{Sync: sync}})
}

// storeBench holds the fixture of the storage ceiling.
type storeBench struct {
	store   verity.Store
	account *verity.Account
	service *verity.Service
	users   []*verity.User
	pins    []verity.PIN // each user's current PIN
	wrong   int          // CountFailedTry calls per PIN in the check mix
	conns   int
	keys    *app.Keys // hash PINs and typed codes as the server does
}

// storagePIN is the code of every PIN the storage ceiling starts.
const storagePIN = "424242"

// unlimited is a limit no benchmark reaches.
const unlimited = 1 << 30

// measureStorage runs the storage ceiling on a fresh store at dsn.
func measureStorage(ctx context.Context, dsn string, sync sqlite.Sync, users, wrong, conns int, d time.Duration) (storageResult, error) {
	res := storageResult{Backend: "sqlite", Concurrency: conns, Users: users}
	if storeopen.IsPostgres(dsn) {
		res.Backend = "postgres"
	}
	store, err := openStore(ctx, dsn, sync)
	if err != nil {
		return res, err
	}
	defer store.Close()
	keys, err := app.NewKeys(randomBytes(32))
	if err != nil {
		return res, err
	}
	b := &storeBench{store: store, wrong: wrong, conns: conns, keys: keys}
	if err := b.seed(ctx, users); err != nil {
		return res, fmt.Errorf("seed store: %w", err)
	}
	// CheckPIN is the ceiling and gets the whole time; the others, which
	// explain it, half. Every consumed PIN costs a StartPIN outside
	// the measurement, so these rounds dominate the ceiling's run time.
	for _, w := range []struct {
		out  *storeRate
		per  int // operations per PIN and round
		d    time.Duration
		kind func(op int) (pinOp, bool)
	}{
		{&res.CheckPIN, wrong + 1, d, func(a int) (pinOp, bool) { return b.checkOp(a), false }},
		{&res.CheckMix, wrong + 1, d / 2, func(a int) (pinOp, bool) { return b.mixOp(a), false }},
		{&res.Consume, 1, d / 2, func(int) (pinOp, bool) { return b.consume, false }},
		{&res.FailedTry, unlimited / users, d / 2, func(int) (pinOp, bool) { return b.fail, false }},
		{&res.FullCheck, wrong + 1, d / 2, func(a int) (pinOp, bool) { return b.mixOp(a), true }},
	} {
		r, err := b.run(ctx, w.d, w.per, w.kind)
		if err != nil {
			return res, err
		}
		*w.out = r
	}
	return res, nil
}

// pinOp is one store write against user i's current PIN.
type pinOp func(ctx context.Context, i int) (bool, error)

func (b *storeBench) seed(ctx context.Context, n int) error {
	now := time.Now().UTC()
	b.account = &verity.Account{ID: uuid.NewString(), Username: "bench", SecretHash: randomBytes(32), CreatedAt: now}
	if err := b.store.CreateAccount(ctx, b.account); err != nil {
		return err
	}
	b.service = &verity.Service{ID: uuid.NewString(), AccountID: b.account.ID, Name: "Bench", FQDN: "bench.example.com",
		Settings: verity.DefaultSettings(), CreatedAt: now}
	if err := b.store.CreateService(ctx, b.service); err != nil {
		return err
	}
	b.users = make([]*verity.User, n)
	b.pins = make([]verity.PIN, n)
	return parallelDo(ctx, n, b.conns, func(i int) error {
		u := &verity.User{ID: uuid.NewString(), ServiceID: b.service.ID, IDInService: fmt.Sprint("s", i),
			Phone: phoneNumber(i), PhoneType: "MOBILE", CreatedAt: now}
		b.users[i] = u
		return b.store.CreateUser(ctx, u)
	})
}

// restart gives every user a fresh PIN (unmeasured), with limits that
// never refuse.
func (b *storeBench) restart(ctx context.Context) error {
	return parallelDo(ctx, len(b.users), b.conns, func(i int) error {
		now := time.Now().UTC()
		p := verity.PIN{ID: uuid.NewString(), UserID: b.users[i].ID, Hash: b.keys.PINHash(b.users[i].ID, storagePIN),
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		st, err := b.store.StartPIN(ctx, verity.PINStart{ServiceID: b.service.ID, PIN: p, SendWindowStart: now, MaxSends: unlimited,
			ResendNotBefore: now, FailureWindowStart: now, FailureLimit: unlimited})
		if err == nil && !st.Started {
			err = fmt.Errorf("StartPIN refused")
		}
		b.pins[i] = p
		return err
	})
}

func (b *storeBench) consume(ctx context.Context, i int) (bool, error) {
	now := time.Now().UTC()
	return b.store.ConsumePIN(ctx, verity.PINConsume{PINID: b.pins[i].ID, UserID: b.users[i].ID, Now: now,
		MaxAttempts: unlimited, FailureWindowStart: now.Add(-time.Hour), FailureLimit: unlimited})
}

func (b *storeBench) fail(ctx context.Context, i int) (bool, error) {
	now := time.Now().UTC()
	return b.store.CountFailedTry(ctx, verity.FailedTry{PINID: b.pins[i].ID, UserID: b.users[i].ID, Now: now,
		MaxAttempts: unlimited, FailureWindowStart: now.Add(-time.Hour), FailureLimit: unlimited})
}

// mixOp is attempt a on a PIN in the check mix: wrong tries first, then the consume.
func (b *storeBench) mixOp(a int) pinOp {
	if a < b.wrong {
		return b.fail
	}
	return b.consume
}

// checkOp is attempt a on a PIN in the check mix made as a check makes it:
// one CheckPIN with the typed code's hash, whose judge compares it with the
// PIN's as the server's does: the first b.wrong attempts type a wrong code,
// the next the right one.
func (b *storeBench) checkOp(a int) pinOp {
	code := storagePIN
	if a < b.wrong {
		code = wrongCode(storagePIN)
	}
	return func(ctx context.Context, i int) (bool, error) {
		now := time.Now().UTC()
		typed := b.keys.PINHash(b.users[i].ID, code)
		judge := func(_ *verity.User, p *verity.PIN) verity.PINVerdict {
			switch {
			case p == nil || p.ConsumedAt != nil:
				return verity.LeaveAsIs
			case b.keys.PINMatches(p, code, typed):
				return verity.ConsumeIt
			}
			return verity.CountIt
		}
		out, err := b.store.CheckPIN(ctx, verity.PINCheck{ServiceID: b.service.ID, UserID: b.users[i].ID, Judge: judge,
			CodeHash: typed, Now: now, MaxAttempts: unlimited, FailureWindowStart: now.Add(-time.Hour), FailureLimit: unlimited})
		return out.Applied, err
	}
}

// reads makes the store read a check makes before its write. The account
// and the service come from the app's 5 s cache, so a check reads only the
// user with its pending PIN, in one statement.
func (b *storeBench) reads(ctx context.Context, i int) error {
	_, _, err := b.store.UserWithPIN(ctx, b.service.ID, b.users[i].ID)
	return err
}

// run measures one workload for d of measured time in rounds: each round
// gives every user a fresh PIN (unmeasured), then makes per operations on
// each PIN, round-robin over the users, with b.conns workers.
func (b *storeBench) run(ctx context.Context, d time.Duration, per int, kind func(attempt int) (pinOp, bool)) (storeRate, error) {
	var (
		r         storeRate
		elapsed   time.Duration
		latencies []time.Duration
		mu        sync.Mutex
	)
	n := len(b.users)
	for round := 0; elapsed < d && round < maxSegments; round++ {
		if err := b.restart(ctx); err != nil {
			return r, err
		}
		var next, errs atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(d - elapsed)
		for range b.conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []time.Duration
				for ctx.Err() == nil && time.Now().Before(deadline) {
					j := int(next.Add(1) - 1)
					if j >= n*per {
						break
					}
					i, attempt := storageOp(j, n, per)
					op, withReads := kind(attempt)
					t0 := time.Now()
					var err error
					if withReads {
						err = b.reads(ctx, i)
					}
					if err == nil {
						var ok bool
						ok, err = op(ctx, i)
						if err == nil && !ok {
							err = fmt.Errorf("store refused")
						}
					}
					if err != nil {
						errs.Add(1)
					} else {
						local = append(local, time.Since(t0))
					}
				}
				mu.Lock()
				latencies = append(latencies, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed += time.Since(start)
		r.Errors += int(errs.Load())
	}
	r.Ops = len(latencies) + r.Errors
	r.Seconds = elapsed.Seconds()
	r.OpsPerSec = ratio(float64(len(latencies)), r.Seconds)
	r.Latency = summarize(slices.Clip(latencies))
	return r, ctx.Err()
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// storageDSN is where the storage ceiling keeps its store: a file in dir
// for SQLite, or the given PostgreSQL database URL.
func storageDSN(dir, pgURL string) string {
	if pgURL != "" {
		return pgURL
	}
	return filepath.Join(dir, "verity.db")
}

// storageBlock is about how many users the storage ceiling takes through
// all their attempts before it moves on to the next ones (storageOp).
const storageBlock = 1024

// storageOp is the user and the attempt of operation j of a round over n
// users with per attempts each. It goes through the users a block at a
// time (n split into blocks of storageBlock to twice that, or one block of
// all n), every attempt of the block's users in turn, so that a user's
// attempts come in order, a block's size apart (far more operations than
// the workers in flight), and any stretch of the round, the one the
// deadline cuts short included, has the scenario's mix of attempts within
// one block. Taking every user's first attempt before any second one made
// the round's first half all wrong codes and its second all right ones,
// and a round cut short mostly wrong codes.
func storageOp(j, n, per int) (user, attempt int) {
	blocks := max(1, n/storageBlock)
	first := func(b int) int { return b * n / blocks } // block b's first user
	b := min(j/per*blocks/n, blocks-1)
	for b > 0 && per*first(b) > j {
		b--
	}
	for b+1 < blocks && per*first(b+1) <= j {
		b++
	}
	size := first(b+1) - first(b)
	k := j - per*first(b)
	return first(b) + k%size, k / size
}

// storageUsers caps the storage ceiling's users: its cost is one StartPIN
// per consumed PIN whatever their number, but seeding them is not free.
const storageUsers = 4000
