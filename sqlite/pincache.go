package sqlite

import (
	"bytes"

	"github.com/verityhq/verity"
)

// pinCache holds, for users whose PIN was recently started or checked, what
// a check reads: the user's row and its newest PIN, and, once a check has
// gone to the user's authenticator app, the active app. A check that finds
// its user here skips those reads, which were about a sixth of the
// server's CPU per check (profile of the benchmark's check scenario; the
// app's read another 14 % in the totp scenario) and ran on the single
// writer that every write waits for.
//
// It is a write-through cache owned by the writer goroutine: only write
// functions and the queue's loop touch it, so it needs no lock, and what
// it holds is what the writer's own transaction would read. It stays right
// because every change to the database passes the write queue:
//
//   - a write that keeps it (StartPIN, CheckPIN) updates or drops the one
//     user it names, from what it wrote, and only after the write applied;
//     the queue drops that user's entry if the write then fails;
//   - any other write clears the whole cache after it runs (see
//     writeOp.keeps), whatever it changed;
//   - a failed commit clears it, since the batch's changes are undone;
//   - another connection's commit (another process, or migrations on the
//     writer pool, whose connections are not the queue's) is caught by
//     PRAGMA data_version at the start of the next batch, which clears it.
//
// Even a stale entry could not let a PIN verify twice or a try go
// uncounted: the writes that consume a PIN or count a try are conditional
// statements that check the row itself. It could only give a wrong answer,
// which is why the rules above keep it exact.
type pinCache struct {
	entries map[string]*cachedUserPIN
	limit   int
}

// cachedUserPIN is a user's row, its seq (the key of user_failures) and
// newest PIN (nil when it has none), and, when appKnown, the user's active
// authenticator app (nil: none).
type cachedUserPIN struct {
	user     verity.User
	seq      int64
	pin      *verity.PIN
	app      *verity.Factor
	appKnown bool
}

// pinCacheLimit bounds the entries, about 0.5 KB each (measured: 482 bytes
// with the strings a user has). The server's garbage collector lets its
// heap grow to several times what is live (GOGC=400, see cmd/verity), so a
// cache of 32,768 entries raised the check benchmark's peak RSS from 140 to
// 266 MB. 16,384 keep it near 8 MB live and cover the users with a PIN
// pending at two thousand starts a second checked within eight seconds.
// The benchmark's check scenario starts all the PINs a phase needs before
// it checks them (tens of thousands), the worst case for any bound: at
// 8,192 entries 43 % of its checks missed and read the user and PIN on the
// writer, at 16,384 30 % (counted in the server), which saves about 3 µs of
// a check's 105-120 µs of server CPU for 31 MB more peak RSS (140 MB).
const pinCacheLimit = 1 << 14

func newPINCache(limit int) *pinCache {
	return &pinCache{entries: make(map[string]*cachedUserPIN), limit: limit}
}

// get returns copies of the cached user and PIN, and the user's seq, or ok
// false when the user is not cached (or belongs to another service: the
// read then answers).
func (c *pinCache) get(userID, serviceID string) (u *verity.User, seq int64, p *verity.PIN, ok bool) {
	e := c.entries[userID]
	if e == nil || e.user.ServiceID != serviceID {
		return nil, 0, nil, false
	}
	u = new(verity.User)
	*u = e.user
	if e.pin != nil {
		p = copyPIN(e.pin)
	}
	return u, e.seq, p, true
}

// put caches copies of u and p, and u's seq, as the database holds them now.
func (c *pinCache) put(u *verity.User, seq int64, p *verity.PIN) {
	if _, cached := c.entries[u.ID]; !cached && len(c.entries) >= c.limit {
		for id := range c.entries { // map order: an arbitrary entry makes room
			delete(c.entries, id)
			break
		}
	}
	e := &cachedUserPIN{user: *u, seq: seq}
	if p != nil {
		e.pin = copyPIN(p)
	}
	c.entries[u.ID] = e
}

// drop forgets one user.
func (c *pinCache) drop(userID string) { delete(c.entries, userID) }

// clear forgets every user, keeping the map's room (no garbage).
func (c *pinCache) clear() {
	if len(c.entries) > 0 {
		clear(c.entries)
	}
}

// counted records countFailedTry's applied UPDATEs, computed the way their
// SQL computes them from the row before.
func (c *pinCache) counted(f verity.FailedTry) {
	e := c.entries[f.UserID]
	if e == nil {
		return
	}
	if f.PINID != "" {
		if e.pin == nil || e.pin.ID != f.PINID {
			c.drop(f.UserID)
			return
		}
		e.pin.Attempts++
	}
	if micros(e.user.FailureWindowStart) > micros(f.FailureWindowStart) {
		e.user.FailureCount++
	} else {
		e.user.FailureCount = 1
		e.user.FailureWindowStart = fromMicros(micros(f.Now))
	}
}

// app returns a copy of the user's cached active app (nil when the user
// has none), or known false when the cache cannot say.
func (c *pinCache) app(userID string) (f *verity.Factor, known bool) {
	e := c.entries[userID]
	if e == nil || !e.appKnown {
		return nil, false
	}
	if e.app != nil {
		f = copyFactor(e.app)
	}
	return f, true
}

// putApp caches a copy of the user's active app as the database holds it
// now (nil: none), for a user already cached.
func (c *pinCache) putApp(userID string, f *verity.Factor) {
	e := c.entries[userID]
	if e == nil {
		return
	}
	e.app, e.appKnown = nil, true
	if f != nil {
		e.app = copyFactor(f)
	}
}

// stepUsed records useStep's applied UPDATE: the app's last step is step.
func (c *pinCache) stepUsed(userID, factorID string, step int64) {
	e := c.entries[userID]
	if e == nil || !e.appKnown || e.app == nil || e.app.ID != factorID {
		c.drop(userID)
		return
	}
	e.app.LastStep = step
}

func copyFactor(f *verity.Factor) *verity.Factor {
	c := *f
	c.Secret = bytes.Clone(f.Secret)
	return &c
}

func copyPIN(p *verity.PIN) *verity.PIN {
	c := *p
	c.Hash = bytes.Clone(p.Hash)
	if p.ConsumedAt != nil {
		at := *p.ConsumedAt
		c.ConsumedAt = &at
	}
	return &c
}
