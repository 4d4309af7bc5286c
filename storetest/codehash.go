package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/verityhq/verity"
)

// The tags of the hashes below: the stores compare only hashes that carry
// the same tag as the typed code's.
const (
	currentTag byte = 2
	otherTag   byte = 3
)

// taggedHash returns a random PIN hash of verity.CodeHashSize bytes under tag.
func taggedHash(tag byte) []byte {
	h := randomBytes(verity.CodeHashSize)
	h[0] = tag
	return h
}

// startHashed starts a PIN whose stored hash is hash.
func startHashed(t *testing.T, f *fixture, now time.Time, hash []byte) *verity.PIN {
	t.Helper()
	start := startAt(f.user, now)
	start.PIN.Hash = hash
	return mustStartPIN(t, f.store, start)
}

// hashCheck checks the typed code's hash, with the judge verity.PINCheck
// asks for when CodeHash is set: the PIN's own conditions, then the hash.
func hashCheck(f *fixture, now time.Time, typed []byte) verity.PINCheck {
	return hashCheckLimited(f, now, typed, verity.DefaultSettings().FailureLimit)
}

// hashCheckLimited is hashCheck with the user's failure limit given.
func hashCheckLimited(f *fixture, now time.Time, typed []byte, failureLimit int) verity.PINCheck {
	c := checkAt(f, now, nil)
	c.CodeHash, c.FailureLimit = typed, failureLimit
	c.Judge = func(u *verity.User, p *verity.PIN) verity.PINVerdict {
		lockedOut := u.FailureCount >= c.FailureLimit && u.FailureWindowStart.After(c.FailureWindowStart)
		switch {
		case p == nil, u.LastMethod == "totp", p.ConsumedAt != nil, !now.Before(p.ExpiresAt),
			p.Attempts >= c.MaxAttempts, lockedOut:
			return verity.LeaveAsIs
		case bytes.Equal(p.Hash, typed): // the app compares in constant time
			return verity.ConsumeIt
		}
		return verity.CountIt
	}
	return c
}

// wantCounts fails unless the pending PIN and the user carry these counts.
func wantCounts(t *testing.T, f *fixture, what string, attempts, failures int, consumed bool) {
	t.Helper()
	p, u := readPIN(t, f), readUser(t, f)
	if p.Attempts != attempts || u.FailureCount != failures || (p.ConsumedAt != nil) != consumed {
		t.Fatalf("%s: PIN attempts %d, user failures %d, PIN used %v; want %d, %d, %v",
			what, p.Attempts, u.FailureCount, p.ConsumedAt != nil, attempts, failures, consumed)
	}
}

// testCodeHashChecks runs CheckPIN with verity.PINCheck.CodeHash, which a
// store may use to decide in the statement that reads: the outcomes must be
// those of the judge alone.
func testCodeHashChecks(t *testing.T, open Open) {
	ctx := context.Background()

	t.Run("a wrong code is counted and the right one consumes the PIN, once", func(t *testing.T) {
		f := newFixture(t, open)
		right := taggedHash(currentTag)
		startHashed(t, f, t0, right)
		now := t0.Add(time.Second)
		out, err := f.store.CheckPIN(ctx, hashCheck(f, now, taggedHash(currentTag)))
		if err != nil || out.Verdict != verity.CountIt || !out.Applied || out.PIN == nil || out.User == nil {
			t.Fatalf("CheckPIN(wrong code) = %+v, %v; want CountIt applied, with the user and the PIN", out, err)
		}
		wantCounts(t, f, "after a wrong code", 1, 1, false)
		out, err = f.store.CheckPIN(ctx, hashCheck(f, now, right))
		if err != nil || out.Verdict != verity.ConsumeIt || !out.Applied {
			t.Fatalf("CheckPIN(right code) = %+v, %v; want ConsumeIt applied", out, err)
		}
		if p := readPIN(t, f); p.ConsumedAt == nil || !p.ConsumedAt.Equal(now) {
			t.Fatalf("the PIN's ConsumedAt = %v, want %v", p.ConsumedAt, now)
		}
		for _, typed := range [][]byte{right, taggedHash(currentTag)} {
			out, err = f.store.CheckPIN(ctx, hashCheck(f, now, typed))
			if err != nil || out.Verdict != verity.LeaveAsIs || out.Applied {
				t.Fatalf("CheckPIN after the PIN was used = %+v, %v; want LeaveAsIs, nothing applied", out, err)
			}
		}
		wantCounts(t, f, "after checks of a used PIN", 1, 1, true)
	})

	t.Run("a PIN stored under another scheme is left to the judge", func(t *testing.T) {
		for name, stored := range map[string][]byte{
			// Its first byte is the tag; its length tells it apart.
			"untagged 32-byte hash": append([]byte{currentTag}, randomBytes(31)...),
			"another tag":           taggedHash(otherTag),
		} {
			t.Run(name, func(t *testing.T) {
				f := newFixture(t, open)
				startHashed(t, f, t0, stored)
				// The typed hash differs from the stored one, yet the judge
				// (hashing the code the PIN's own way) finds it right.
				c := hashCheck(f, t0.Add(time.Second), taggedHash(currentTag))
				c.Judge = always(verity.ConsumeIt)
				out, err := f.store.CheckPIN(ctx, c)
				if err != nil || out.Verdict != verity.ConsumeIt || !out.Applied {
					t.Fatalf("CheckPIN = %+v, %v; want the judge's ConsumeIt applied", out, err)
				}
				wantCounts(t, f, "after the judge's right code", 0, 0, true)
			})
		}
	})

	t.Run("nothing is decided by the hash for a user whose latest start was not an SMS PIN", func(t *testing.T) {
		f := newFixture(t, open)
		startHashed(t, f, t0, taggedHash(currentTag))
		if err := f.store.SetLastMethod(ctx, f.user.ID, "totp"); err != nil {
			t.Fatal(err)
		}
		out, err := f.store.CheckPIN(ctx, hashCheck(f, t0.Add(time.Second), taggedHash(currentTag)))
		if err != nil || out.Verdict != verity.LeaveAsIs || out.Applied {
			t.Fatalf("CheckPIN = %+v, %v; want the judge's LeaveAsIs, nothing applied", out, err)
		}
		wantCounts(t, f, "after a wrong code for an app user", 0, 0, false)
	})

	t.Run("nothing is written that the conditions forbid", func(t *testing.T) {
		f := newFixture(t, open)
		right := taggedHash(currentTag)
		p := startHashed(t, f, t0, right)
		expired := p.ExpiresAt
		for _, typed := range [][]byte{right, taggedHash(currentTag)} {
			if out, err := f.store.CheckPIN(ctx, hashCheck(f, expired, typed)); err != nil || out.Applied {
				t.Fatalf("CheckPIN of an expired PIN = %+v, %v; want nothing applied", out, err)
			}
		}
		wantCounts(t, f, "after checks of an expired PIN", 0, 0, false)

		now := t0.Add(time.Second)
		maxAttempts := verity.DefaultSettings().MaxAttempts
		for i := range maxAttempts + 2 {
			out, err := f.store.CheckPIN(ctx, hashCheck(f, now, taggedHash(currentTag)))
			if err != nil || out.Applied != (i < maxAttempts) {
				t.Fatalf("wrong code %d of a PIN allowing %d = %+v, %v", i+1, maxAttempts, out, err)
			}
		}
		if out, err := f.store.CheckPIN(ctx, hashCheck(f, now, right)); err != nil || out.Applied {
			t.Fatalf("the right code after the PIN's tries ran out = %+v, %v; want nothing applied", out, err)
		}
		wantCounts(t, f, "after the tries ran out", maxAttempts, maxAttempts, false)

		// A new PIN, and a user at its failure limit.
		later := t0.Add(time.Minute)
		right = taggedHash(currentTag)
		startHashed(t, f, later, right)
		for _, typed := range [][]byte{right, taggedHash(currentTag)} {
			c := hashCheckLimited(f, later, typed, maxAttempts)
			if out, err := f.store.CheckPIN(ctx, c); err != nil || out.Applied {
				t.Fatalf("CheckPIN for a locked-out user = %+v, %v; want nothing applied", out, err)
			}
		}
		wantCounts(t, f, "after checks by a locked-out user", 0, maxAttempts, false)
	})

	t.Run("of 100 concurrent checks of the right code exactly one consumes", func(t *testing.T) {
		f := newFixture(t, open)
		right := taggedHash(currentTag)
		startHashed(t, f, t0, right)
		wins := parallel(t, 100, func(int) (bool, error) {
			out, err := f.store.CheckPIN(ctx, hashCheck(f, t0.Add(time.Second), right))
			return out.Verdict == verity.ConsumeIt && out.Applied, err
		})
		if wins != 1 {
			t.Fatalf("%d checks consumed the PIN, want exactly 1", wins)
		}
		wantCounts(t, f, "after the checks", 0, 0, true)
	})

	t.Run("of 200 concurrent checks of wrong codes exactly MaxAttempts count, with the user's failures", func(t *testing.T) {
		f := newFixture(t, open)
		startHashed(t, f, t0, taggedHash(currentTag))
		counted := parallel(t, 200, func(int) (bool, error) {
			out, err := f.store.CheckPIN(ctx, hashCheck(f, t0.Add(time.Second), taggedHash(currentTag)))
			return out.Verdict == verity.CountIt && out.Applied, err
		})
		maxAttempts := verity.DefaultSettings().MaxAttempts
		if counted != maxAttempts {
			t.Fatalf("%d wrong codes counted, want exactly %d", counted, maxAttempts)
		}
		wantCounts(t, f, "after the checks", maxAttempts, maxAttempts, false)
	})

	t.Run("concurrent right and wrong codes: one consume, and no counter passes its limit", func(t *testing.T) {
		f := newFixture(t, open)
		right := taggedHash(currentTag)
		startHashed(t, f, t0, right)
		const failureLimit = 3
		var consumed, counted int
		results := make(chan verity.PINChecked, 100)
		parallel(t, 100, func(i int) (bool, error) {
			typed := taggedHash(currentTag)
			if i%10 == 9 {
				typed = right
			}
			out, err := f.store.CheckPIN(ctx, hashCheckLimited(f, t0.Add(time.Second), typed, failureLimit))
			results <- out
			return out.Applied, err
		})
		close(results)
		for out := range results {
			switch {
			case out.Applied && out.Verdict == verity.ConsumeIt:
				consumed++
			case out.Applied && out.Verdict == verity.CountIt:
				counted++
			}
		}
		p, u := readPIN(t, f), readUser(t, f)
		if consumed > 1 || counted > failureLimit || p.Attempts != counted || u.FailureCount != counted ||
			(consumed == 1) != (p.ConsumedAt != nil) {
			t.Fatalf("%d consumed, %d counted; the PIN has %d attempts (used: %v), the user %d failures; want at most 1 consume and %d counted, each counted once in both",
				consumed, counted, p.Attempts, p.ConsumedAt != nil, u.FailureCount, failureLimit)
		}
	})
}
