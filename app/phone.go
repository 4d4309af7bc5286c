package app

import (
	"strings"

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
	s := strings.TrimSpace(raw)
	if !strings.HasPrefix(s, "+") {
		return "", "", verity.Errorf(verity.EINVALID, "phone_number must be in international format, starting with + and the country code")
	}
	// libphonenumber reads letters as keypad digits (1-800-FLOWERS); a
	// verification number never has them.
	if strings.Trim(s[1:], "0123456789 -().") != "" || len(s) > 32 {
		return "", "", verity.Errorf(verity.EINVALID, "phone_number may contain only digits after the +")
	}
	num, perr := phonenumbers.Parse(s, "")
	if perr != nil {
		return "", "", verity.Errorf(verity.EINVALID, "phone_number is not a phone number")
	}
	if phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE {
		return "", "", verity.Errorf(verity.EINVALID, "phone_number has the wrong length for its country or an unknown country code")
	}
	return phonenumbers.Format(num, phonenumbers.E164), numberTypeName(phonenumbers.GetNumberType(num)), nil
}

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
