package app

import (
	"regexp"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
	"github.com/verityhq/verity"
)

// NormalizePhone parses an international phone number and returns it in
// E.164 with libphonenumber's number type. It accepts every number that is
// possible for its country (right length, real country code) even when the
// range metadata does not list it as assigned, so test ranges such as
// +3725555555 register; it rejects letters, a missing country code and
// impossible lengths.
func NormalizePhone(raw string) (e164, numberType string, err error) {
	e164, numberType, _, err = normalizePhone(raw, true)
	return e164, numberType, err
}

// normalizePhone is NormalizePhone; with tryFast false it always asks
// phonenumbers.Parse, and fast tells whether parsePhoneFast gave the answer.
// The tests compare the two ways.
func normalizePhone(raw string, tryFast bool) (e164, numberType string, fast bool, err error) {
	s := strings.TrimSpace(raw)
	if !strings.HasPrefix(s, "+") {
		return "", "", false, verity.Errorf(verity.EINVALID, "phone_number must be in international format, starting with + and the country code")
	}
	// libphonenumber reads letters as keypad digits (1-800-FLOWERS); a
	// verification number never has them.
	if strings.Trim(s[1:], "0123456789 -().") != "" || len(s) > 32 {
		return "", "", false, verity.Errorf(verity.EINVALID, "phone_number may contain only digits after the +")
	}
	var num *phonenumbers.PhoneNumber
	if tryFast {
		num, fast = parsePhoneFast(s)
	}
	if !fast {
		var perr error
		num, perr = phonenumbers.Parse(s, "")
		if perr != nil {
			return "", "", false, verity.Errorf(verity.EINVALID, "phone_number is not a phone number")
		}
	}
	if phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE {
		return "", "", fast, verity.Errorf(verity.EINVALID, "phone_number has the wrong length for its country or an unknown country code")
	}
	return phonenumbers.Format(num, phonenumbers.E164), numberTypeName(phonenumbers.GetNumberType(num)), fast, nil
}

// parsePhoneFast builds the *phonenumbers.PhoneNumber that
// phonenumbers.Parse(s, "") returns, for the common input, without Parse's
// regular expressions; ok is false whenever it cannot be sure, and then the
// caller asks Parse, which stays the authority.
//
// Why hand-write part of a listed library: NormalizePhone cost 30-40 µs
// and 73 allocations a call, over half of it in Parse and most of that in
// regexes that cannot matter for input that passed NormalizePhone's checks
// (the case-insensitive extension pattern alone was a quarter of the call:
// an extension needs letters, '#', ';', ',' or '~'), and user creation spent
// over half its CPU here. With this path BenchmarkNormalizePhone went from
// about 29 µs and 73 allocations to 12 µs and 51. The steps below
// are those of Parse's parseHelper (phonenumbers v1.8.1) for a '+' followed
// by digits and the separators " -().", which Parse strips; the
// differential test and FuzzNormalizePhoneFastPathMatches hold the two
// equal. Re-check this against parseHelper when upgrading phonenumbers.
//
// s must have passed NormalizePhone's checks: a '+', then only digits and
// " -().", at most 32 bytes.
func parsePhoneFast(s string) (num *phonenumbers.PhoneNumber, ok bool) {
	var buf [32]byte
	digits := buf[:0]
	for i := 1; i < len(s); i++ {
		if c := s[i]; '0' <= c && c <= '9' {
			digits = append(digits, c)
		}
	}
	// extractCountryCode: no calling code starts with 0; the first of the
	// leading 1, 2 and 3 digits that is a known calling code is it.
	if len(digits) == 0 || digits[0] == '0' {
		return nil, false
	}
	codes := phoneCallingCodes()
	cc, n := 0, 0
	for i := 0; i < 3 && i < len(digits); i++ {
		cc = cc*10 + int(digits[i]-'0')
		if codes[cc].known {
			n = i + 1
			break
		}
	}
	if n == 0 || !codes[cc].fast {
		return nil, false
	}
	nsn := digits[n:]
	// Parse refuses fewer than 2 (MIN_LENGTH_FOR_NSN) and more than 17
	// (MAX_LENGTH_FOR_NSN) national digits; those are left to it.
	if len(nsn) < 2 || len(nsn) > 17 {
		return nil, false
	}
	// maybeStripNationalPrefixAndCarrierCode: Parse strips the region's
	// national prefix even after a '+' when what remains has a possible
	// length. Where the prefix matches at all, Parse decides (for
	// Argentina, whose pattern matches any number, always).
	if re := codes[cc].nationalPrefix; re != nil && re.Match(nsn) {
		return nil, false
	}
	p := new(fastPhoneNumber)
	p.countryCode = int32(cc)
	p.num.CountryCode = &p.countryCode
	// setItalianLeadingZerosForPhoneNumber: a number of all zeros keeps
	// its last zero.
	if nsn[0] == '0' {
		p.italianLeadingZero = true
		p.num.ItalianLeadingZero = &p.italianLeadingZero
		zeros := 1
		for zeros < len(nsn)-1 && nsn[zeros] == '0' {
			zeros++
		}
		if zeros != 1 {
			p.leadingZeros = int32(zeros)
			p.num.NumberOfLeadingZeros = &p.leadingZeros
		}
	}
	for _, c := range nsn { // at most 17 digits: no overflow
		p.nationalNumber = p.nationalNumber*10 + uint64(c-'0')
	}
	p.num.NationalNumber = &p.nationalNumber
	return &p.num, true
}

// fastPhoneNumber holds a PhoneNumber with the values its optional fields
// point to, so parsePhoneFast allocates once.
type fastPhoneNumber struct {
	num                phonenumbers.PhoneNumber
	countryCode        int32
	nationalNumber     uint64
	italianLeadingZero bool
	leadingZeros       int32
}

// phoneCallingCode is what parsePhoneFast knows of one calling code.
type phoneCallingCode struct {
	known bool // Parse takes it as a calling code
	// fast: its main region is a geographic one with metadata;
	// non-geographic codes (800, 808, 870, ...) are left to Parse.
	fast bool
	// nationalPrefix is the main region's NationalPrefixForParsing as
	// Parse anchors it, nil when the region has none.
	nationalPrefix *regexp.Regexp
}

// phoneCallingCodes is indexed by calling code, built once from the
// library's own tables.
var phoneCallingCodes = sync.OnceValue(func() *[1000]phoneCallingCode {
	var codes [1000]phoneCallingCode
	metadata := map[string]*phonenumbers.PhoneMetadata{}
	if coll, err := phonenumbers.MetadataCollection(); err == nil {
		for _, m := range coll.GetMetadata() {
			metadata[m.GetId()] = m // as the library's region map: the last one wins
		}
	}
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		if cc <= 0 || cc >= len(codes) {
			continue // never the first 1-3 digits of a number: Parse would not find it either
		}
		c := &codes[cc]
		c.known = true
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		m := metadata[region]
		if region == "001" || region == phonenumbers.UNKNOWN_REGION || m == nil {
			continue
		}
		c.fast = true
		if p := m.GetNationalPrefixForParsing(); p != "" {
			c.nationalPrefix = regexp.MustCompile("^(?:" + p + ")")
		}
	}
	return &codes
})

func numberTypeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.FIXED_LINE:
		return "FIXED_LINE"
	case phonenumbers.MOBILE:
		return "MOBILE"
	case phonenumbers.FIXED_LINE_OR_MOBILE:
		return "FIXED_LINE_OR_MOBILE"
	case phonenumbers.TOLL_FREE:
		return "TOLL_FREE"
	case phonenumbers.PREMIUM_RATE:
		return "PREMIUM_RATE"
	case phonenumbers.SHARED_COST:
		return "SHARED_COST"
	case phonenumbers.VOIP:
		return "VOIP"
	case phonenumbers.PERSONAL_NUMBER:
		return "PERSONAL_NUMBER"
	case phonenumbers.PAGER:
		return "PAGER"
	case phonenumbers.UAN:
		return "UAN"
	case phonenumbers.VOICEMAIL:
		return "VOICEMAIL"
	default:
		return "UNKNOWN"
	}
}
