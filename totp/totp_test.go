package totp_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/verityhq/verity/totp"
)

// rfcSeed returns the RFC 6238 Appendix B seed: "1234567890" repeated to n bytes.
func rfcSeed(n int) []byte {
	return []byte(strings.Repeat("1234567890", 7)[:n])
}

func TestHOTP(t *testing.T) {
	// RFC 4226 Appendix D.
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	secret := []byte("12345678901234567890")
	for counter, w := range want {
		t.Run(fmt.Sprintf("counter %d gives %s", counter, w), func(t *testing.T) {
			if got := totp.HOTP(secret, uint64(counter), 6, totp.SHA1); got != w {
				t.Fatalf("HOTP(counter=%d) = %q, want %q", counter, got, w)
			}
		})
	}
}

func TestCodeRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B, with the seed lengths its reference code uses per hash.
	tests := []struct {
		unix int64
		alg  totp.Algorithm
		want string
	}{
		{59, totp.SHA1, "94287082"},
		{59, totp.SHA256, "46119246"},
		{59, totp.SHA512, "90693936"},
		{1111111109, totp.SHA1, "07081804"},
		{1111111109, totp.SHA256, "68084774"},
		{1111111109, totp.SHA512, "25091201"},
		{1111111111, totp.SHA1, "14050471"},
		{1111111111, totp.SHA256, "67062674"},
		{1111111111, totp.SHA512, "99943326"},
		{1234567890, totp.SHA1, "89005924"},
		{1234567890, totp.SHA256, "91819424"},
		{1234567890, totp.SHA512, "93441116"},
		{2000000000, totp.SHA1, "69279037"},
		{2000000000, totp.SHA256, "90698825"},
		{2000000000, totp.SHA512, "38618901"},
		{20000000000, totp.SHA1, "65353130"},
		{20000000000, totp.SHA256, "77737706"},
		{20000000000, totp.SHA512, "47863826"},
	}
	seeds := map[totp.Algorithm][]byte{totp.SHA1: rfcSeed(20), totp.SHA256: rfcSeed(32), totp.SHA512: rfcSeed(64)}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s at %d gives %s", tt.alg, tt.unix, tt.want), func(t *testing.T) {
			p := totp.Params{Algorithm: tt.alg, Digits: 8, Period: 30, Skew: 0}
			now := time.Unix(tt.unix, 0)
			step := totp.Step(now, p.Period)
			if got := totp.Code(seeds[tt.alg], step, p); got != tt.want {
				t.Fatalf("Code = %q, want %q", got, tt.want)
			}
			gotStep, ok := totp.Match(seeds[tt.alg], tt.want, now, p)
			if !ok {
				t.Fatalf("Match(%q) refused the RFC code", tt.want)
			}
			if gotStep != step {
				t.Fatalf("Match step = %d, want %d", gotStep, step)
			}
		})
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix   int64
		period int
		want   int64
	}{
		{0, 30, 0},
		{29, 30, 0},
		{30, 30, 1},
		{59, 30, 1},
		{59, 60, 0},
		{1111111109, 30, 0x23523EC},
		{20000000000, 30, 0x27BC86AA},
		{-1, 30, -1},
		{-30, 30, -1},
		{-31, 30, -2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d s with period %d is step %d", tt.unix, tt.period, tt.want), func(t *testing.T) {
			if got := totp.Step(time.Unix(tt.unix, 0), tt.period); got != tt.want {
				t.Fatalf("Step = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestMatchDrift(t *testing.T) {
	secret := rfcSeed(20)
	now := time.Unix(1234567890, 0)
	for _, skew := range []int{0, 1, 2} {
		p := totp.DefaultParams()
		p.Skew = skew
		current := totp.Step(now, p.Period)
		for drift := int64(-2); drift <= 2; drift++ {
			accept := drift >= -int64(skew) && drift <= int64(skew)
			t.Run(fmt.Sprintf("skew %d with drift %+d accepts=%v", skew, drift, accept), func(t *testing.T) {
				code := totp.Code(secret, current+drift, p)
				step, ok := totp.Match(secret, code, now, p)
				if ok != accept {
					t.Fatalf("Match ok = %v, want %v", ok, accept)
				}
				if ok {
					if got, want := step, current+drift; got != want {
						t.Fatalf("Match step = %d, want %d", got, want)
					}
				}
			})
		}
	}
}

func TestMatchAtPeriodEdges(t *testing.T) {
	secret := rfcSeed(20)
	p := totp.DefaultParams()
	p.Skew = 0
	start := time.Unix(1234567890/30*30, 0)
	code := totp.Code(secret, totp.Step(start, 30), p)
	for _, tt := range []struct {
		name   string
		at     time.Time
		accept bool
	}{
		{"the first second of the step accepts", start, true},
		{"the last second of the step accepts", start.Add(29*time.Second + 999*time.Millisecond), true},
		{"the first second of the next step refuses", start.Add(30 * time.Second), false},
		{"the last second of the previous step refuses", start.Add(-time.Nanosecond), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := totp.Match(secret, code, tt.at, p); ok != tt.accept {
				t.Fatalf("Match ok = %v, want %v", ok, tt.accept)
			}
		})
	}
}

func TestMatchRefusesMalformedCodes(t *testing.T) {
	secret := rfcSeed(20)
	now := time.Unix(1234567890, 0)
	p := totp.DefaultParams()
	valid := totp.Code(secret, totp.Step(now, p.Period), p)
	if _, ok := totp.Match(secret, valid, now, p); !ok {
		t.Fatalf("Match(%q) refused the current code", valid)
	}
	p8 := p
	p8.Digits = 8
	for _, tt := range []struct {
		name string
		code string
		p    totp.Params
	}{
		{"an empty code", "", p},
		{"a code one digit short", valid[:5], p},
		{"a code one digit long", valid + "0", p},
		{"a 6-digit code under 8-digit params", valid, p8},
		{"a code with a letter", valid[:5] + "a", p},
		{"a code with a space", valid[:3] + " " + valid[3:5], p},
		{"a code with a sign", "+" + valid[1:], p},
		{"a code with full-width digits", "１２３４５６", p},
		{"a code with a trailing newline", valid[:5] + "\n", p},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			if _, ok := totp.Match(secret, tt.code, now, tt.p); ok {
				t.Fatalf("Match(%q) = ok, want refused", tt.code)
			}
		})
	}
}

func TestMatchRefusesWrongSecretAndInvalidParams(t *testing.T) {
	now := time.Unix(1234567890, 0)
	p := totp.DefaultParams()
	code := totp.Code(rfcSeed(20), totp.Step(now, p.Period), p)
	if _, ok := totp.Match([]byte("another secret here!"), code, now, p); ok {
		t.Fatal("Match accepted a code under a different secret")
	}
	bad := p
	bad.Algorithm = "MD5"
	if _, ok := totp.Match(rfcSeed(20), code, now, bad); ok {
		t.Fatal("Match accepted a code under invalid params")
	}
}

func TestParamsValidate(t *testing.T) {
	if err := totp.DefaultParams().Validate(); err != nil {
		t.Fatalf("DefaultParams().Validate() = %v, want nil", err)
	}
	if got, want := totp.DefaultParams(), (totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: 30, Skew: 1}); got != want {
		t.Fatalf("DefaultParams() = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		name string
		edit func(*totp.Params)
		ok   bool
	}{
		{"SHA256 is valid", func(p *totp.Params) { p.Algorithm = totp.SHA256 }, true},
		{"SHA512 with 8 digits and 60 s is valid", func(p *totp.Params) { p.Algorithm, p.Digits, p.Period = totp.SHA512, 8, 60 }, true},
		{"skew 0 is valid", func(p *totp.Params) { p.Skew = 0 }, true},
		{"skew 2 is valid", func(p *totp.Params) { p.Skew = 2 }, true},
		{"lower-case sha1 is invalid", func(p *totp.Params) { p.Algorithm = "sha1" }, false},
		{"an empty algorithm is invalid", func(p *totp.Params) { p.Algorithm = "" }, false},
		{"7 digits is invalid", func(p *totp.Params) { p.Digits = 7 }, false},
		{"period 0 is invalid", func(p *totp.Params) { p.Period = 0 }, false},
		{"period 15 is invalid", func(p *totp.Params) { p.Period = 15 }, false},
		{"skew 3 is invalid", func(p *totp.Params) { p.Skew = 3 }, false},
		{"negative skew is invalid", func(p *totp.Params) { p.Skew = -1 }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := totp.DefaultParams()
			tt.edit(&p)
			if err := p.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("123456", int64(1234567890))
	f.Add("", int64(0))
	f.Add("１２３", int64(-1))
	secret := rfcSeed(20)
	p := totp.DefaultParams()
	f.Fuzz(func(t *testing.T, code string, unix int64) {
		now := time.Unix(unix, 0)
		step, ok := totp.Match(secret, code, now, p)
		if !ok {
			return
		}
		if got, want := totp.Code(secret, step, p), code; got != want {
			t.Fatalf("Match accepted %q at step %d whose code is %q", code, step, got)
		}
		if d := step - totp.Step(now, p.Period); d < -1 || d > 1 {
			t.Fatalf("Match accepted step %d, %d steps from now", step, d)
		}
	})
}

// BenchmarkMatch measures a wrong code checked against the default window
// (three candidate steps), the common case of an authenticator check: it
// runs on the store's single writer, so its cost is every write's wait.
func BenchmarkMatch(b *testing.B) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_700_000_000, 0)
	p := totp.DefaultParams()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := totp.Match(secret, "000000", now, p); ok {
			b.Fatal("000000 matched")
		}
	}
}

// TestMatchKeysOneHMAC bounds Match's allocations: keying an HMAC costs
// more than the MAC of a counter, so Match keys one for all its candidate
// steps. Keying one per step, as it once did, allocates 24 times here.
func TestMatchKeysOneHMAC(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1_700_000_000, 0)
	p := totp.DefaultParams()
	allocs := testing.AllocsPerRun(20, func() { totp.Match(secret, "000000", now, p) })
	if allocs > 16 {
		t.Fatalf("Match allocates %.0f times, want at most 16 (one keyed HMAC for its %d steps)", allocs, 2*p.Skew+1)
	}
}
