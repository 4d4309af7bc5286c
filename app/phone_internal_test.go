package app

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// comparePhonePaths runs NormalizePhone's fast path and the plain Parse
// path on raw and fails on any difference in what a caller sees (E.164,
// type, error text and type); with checkNumber it also compares the
// PhoneNumber that parsePhoneFast builds with Parse's. It returns whether
// the fast path gave the answer. When the fast path declines, NormalizePhone
// runs the very lines the slow path runs, so only answers it gave are
// compared (that halves the test's time under -race).
func comparePhonePaths(t testing.TB, raw string, checkNumber bool) (fast bool) {
	t.Helper()
	e1, t1, fast, err1 := normalizePhone(raw, true)
	if !fast {
		return false
	}
	e2, t2, _, err2 := normalizePhone(raw, false)
	if e1 != e2 || t1 != t2 || errText(err1) != errText(err2) {
		t.Fatalf("%q: fast path gave (%q, %q, %s), Parse gave (%q, %q, %s)",
			raw, e1, t1, errText(err1), e2, t2, errText(err2))
	}
	if checkNumber {
		s := strings.TrimSpace(raw)
		got, ok := parsePhoneFast(s)
		want, err := phonenumbers.Parse(s, "")
		if !ok || err != nil {
			t.Fatalf("%q: parsePhoneFast ok=%v, Parse error %v", raw, ok, err)
		}
		if g, w := describePhoneNumber(got), describePhoneNumber(want); g != w {
			t.Fatalf("%q: parsePhoneFast built %s, Parse %s", raw, g, w)
		}
	}
	return true
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T %q", err, err.Error())
}

// describePhoneNumber shows every field of a PhoneNumber, telling an unset
// field from one set to its default.
func describePhoneNumber(n *phonenumbers.PhoneNumber) string {
	return fmt.Sprintf("{cc:%s nn:%s ext:%s italian0:%s zeros:%s raw:%s source:%s carrier:%s}",
		ptr(n.CountryCode), ptr(n.NationalNumber), ptr(n.Extension), ptr(n.ItalianLeadingZero),
		ptr(n.NumberOfLeadingZeros), ptr(n.RawInput), ptr(n.CountryCodeSource), ptr(n.PreferredDomesticCarrierCode))
}

func ptr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// phoneDiffCases are the differential test's inputs: every calling code
// (and the unknown ones up to 999) with national parts of 0 to 18 digits,
// random or with the prefixes that steer Parse (leading zeros, national
// prefixes, the start of the regions' national-prefix-for-parsing
// patterns); every region's example numbers, bare, behind the national
// prefix and formatted; separators and whitespace in random places; and the
// edges of NormalizePhone's own checks. Deterministic.
func phoneDiffCases() []string {
	r := rand.New(rand.NewPCG(0x5eed, 2026))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		return string(b)
	}
	var cases []string
	add := func(s string) { cases = append(cases, s) }

	// Prefixes that matter to Parse somewhere: leading zeros, national
	// prefixes, and the beginnings of NationalPrefixForParsing patterns
	// (GB 180020, AU 1831, BR 90xx, JP 003768, CN 11/12/179, SM 8/9, RU 8,
	// NANPA 1, GA 011/06x, MX 044/045/01/02).
	pool := []string{"0", "00", "000", "1", "8", "9", "7", "11", "12", "15", "179",
		"180020", "1831", "1832", "90", "9012", "9021", "003768", "0003768", "0549",
		"011", "060", "06", "044", "045", "01", "02", "0011", "015"}
	for _, cc := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedCallingCodes())) {
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		np := phonenumbers.GetNddPrefixForRegion(region, true)
		for n := 0; n <= 18; n++ {
			prefixes := []string{"", pool[r.IntN(len(pool))]}
			if np != "" {
				prefixes = append(prefixes, np)
			}
			for _, p := range prefixes {
				if len(p) <= n {
					add("+" + strconv.Itoa(cc) + p + digits(n-len(p)))
				}
			}
			if n%2 == 0 {
				add("+" + strconv.Itoa(cc) + strings.Repeat("0", n))
			} else {
				add("+" + strconv.Itoa(cc) + strings.Repeat("0", n-1) + digits(1))
			}
		}
	}
	// The numbers below 1000 that are no calling code (Parse may still
	// find a shorter or a longer one among the digits).
	for cc := range 1000 {
		if !phonenumbers.GetSupportedCallingCodes()[cc] {
			for range 2 {
				add("+" + strconv.Itoa(cc) + digits(r.IntN(19)))
			}
		}
	}
	// Real numbers from the metadata: what the regions' numbers look like.
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE,
		phonenumbers.TOLL_FREE, phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST,
		phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER,
		phonenumbers.UAN, phonenumbers.VOICEMAIL}
	var examples []*phonenumbers.PhoneNumber
	for _, region := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedRegions())) {
		for _, typ := range types {
			if n := phonenumbers.GetExampleNumberForType(region, typ); n != nil {
				examples = append(examples, n)
			}
		}
	}
	for _, cc := range slices.Sorted(maps.Keys(phonenumbers.GetSupportedGlobalNetworkCallingCodes())) {
		if n := phonenumbers.GetExampleNumberForNonGeoEntity(cc); n != nil {
			examples = append(examples, n)
		}
	}
	for _, n := range examples {
		cc := strconv.Itoa(int(n.GetCountryCode()))
		nsn := phonenumbers.GetNationalSignificantNumber(n)
		np := phonenumbers.GetNddPrefixForRegion(phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode())), true)
		add("+" + cc + nsn)
		add("+" + cc + np + nsn)
		add("+" + cc + "0" + nsn)
		add("+" + cc + nsn[:len(nsn)-1])
		add("+" + cc + nsn + digits(1))
		add(phonenumbers.Format(n, phonenumbers.INTERNATIONAL))
		add(phonenumbers.Format(n, phonenumbers.RFC3966))
	}
	// Separators in random places, and whitespace around.
	const seps = " -()."
	spaces := []string{" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "  "}
	plain := len(cases)
	for range 4000 {
		s := cases[r.IntN(plain)]
		if !strings.HasPrefix(s, "+") {
			continue
		}
		b := []byte(s)
		for range 1 + r.IntN(5) {
			at := 1 + r.IntN(len(b))
			b = slices.Insert(b, at, seps[r.IntN(len(seps))])
		}
		s = string(b)
		if r.IntN(4) == 0 {
			s = spaces[r.IntN(len(spaces))] + s
		}
		if r.IntN(4) == 0 {
			s += spaces[r.IntN(len(spaces))]
		}
		add(s)
	}
	// The edges of NormalizePhone's own checks.
	for _, s := range []string{"", " ", "+", " + ", "+ ", "+0", "+00", "+000000000000", "+1", "+12", "+123",
		"+1234", "+0123456789", "+()", "+-", "+1 (", "+ 372", "+(372) 5555-555", "+372.5555.555",
		"+372--5555555", "+372 5555555 ", "3725555555", "++3725555555", "+ +3725555555",
		"+1800FLOWERS", "+3725555555x12", "+3725555555#", "+3725555555;ext=1", "+3725555555,,1",
		"+3725555555~1", "+372/5555555", "tel:+3725555555", "+37255\u0665555", "+３７２５５５５５５５",
		"+" + strings.Repeat("1", 31), "+" + strings.Repeat("1", 32), "+" + strings.Repeat("9", 40),
		"+44" + strings.Repeat("0", 29), "+44" + strings.Repeat("7", 18), "+44" + strings.Repeat("7", 17),
		"+1" + strings.Repeat(" ", 30), "+1 2 3 4 5 6 7 8 9 0 1 2 3 4 5", "+8001234567", "+80012345678",
		"+882", "+88213", "+8821234567", "+979123456789", "+3906123456", "+39 06 1234 5678",
		"+390000000", "+3900", "+39000", "+2250123456789", "+24106031234", "+378912345", "+3780549912345",
		"+61183112345678", "+447911123456", "+4418002012345", "+5590211234567890", "+81003768123456",
	} {
		add(s)
	}
	return cases
}

// TestNormalizePhoneFastPathMatchesParse: for tens of thousands of inputs,
// NormalizePhone with its fast path answers exactly as it does through
// phonenumbers.Parse alone, and where the fast path answers it builds the
// same PhoneNumber as Parse.
func TestNormalizePhoneFastPathMatchesParse(t *testing.T) {
	cases := phoneDiffCases()
	var fast atomic.Int64
	// Parse takes some 300 µs a call under -race: the cases are shared
	// among the CPUs.
	workers := runtime.GOMAXPROCS(0)
	t.Run("cases", func(t *testing.T) {
		for w := range workers {
			t.Run(strconv.Itoa(w), func(t *testing.T) {
				t.Parallel()
				for i := w; i < len(cases); i += workers {
					if comparePhonePaths(t, cases[i], i%8 == 0) {
						fast.Add(1)
					}
				}
			})
		}
	})
	t.Logf("%d cases, %d took the fast path", len(cases), fast.Load())
	if len(cases) < 20000 || fast.Load() < int64(len(cases)/3) {
		t.Fatalf("only %d cases, %d on the fast path: the test no longer covers it", len(cases), fast.Load())
	}
}

// TestNormalizePhoneFastPathTakesOrdinaryNumbers: ordinary numbers, as
// users type them, do not fall back to Parse.
func TestNormalizePhoneFastPathTakesOrdinaryNumbers(t *testing.T) {
	for _, raw := range []string{
		"+37255512345", "+3725555555", "+14155552671", "+1 (415) 555-2671", "+447911123456",
		"+44 7911 123456", "+4915112345678", "+33612345678", "+33 6 12 34 56 78", "+390612345678",
		"+919876543210", "+61412345678", "+5511987654321", "+79161234567", "+8613812345678",
		"+819012345678", "+358401234567", "+46701234567", "+48512345678", "+380501234567",
		"+525512345678", "+27821234567", "+2348031234567", "+971501234567",
	} {
		e164, typ, fast, err := normalizePhone(raw, true)
		if err != nil || !fast {
			t.Errorf("%q: fast path %v, error %v", raw, fast, err)
			continue
		}
		comparePhonePaths(t, raw, true)
		t.Logf("%q -> %s %s", raw, e164, typ)
	}
}

// FuzzNormalizePhoneFastPathMatches: for any string, and for the string
// made of '+' and the input's bytes read as digits and separators (so that
// most inputs get past NormalizePhone's checks), the fast path answers as
// Parse does.
func FuzzNormalizePhoneFastPathMatches(f *testing.F) {
	for _, s := range []string{
		"+37255512345", "+14155552671", "+447911123456", "+4915112345678", "+33612345678",
		"+1 (415) 555-2671", " +44 7911 123456\n", "+390612345678", "+39000", "+7 800 555 35 35",
		"+61183112345678", "+5590211234567890", "+81003768123456", "+8001234567", "+979123456789",
		"+", "+0", "+00000", "+1800FLOWERS", "+" + strings.Repeat("9", 31), "3725555555",
		"+54 9 11 1234 5678", "+5491112345678", "+378912345",
	} {
		f.Add(s)
	}
	const alphabet = "0123456789 -()."
	f.Fuzz(func(t *testing.T, raw string) {
		comparePhonePaths(t, raw, true)
		b := []byte("+")
		for i := 0; i < len(raw); i++ {
			b = append(b, alphabet[int(raw[i])%len(alphabet)])
		}
		comparePhonePaths(t, string(b), true)
	})
}
