package httpapi

// The start and the check are the hottest requests, and their bodies are
// tiny flat objects of strings: {"method": "sms"}, {"token": "123456",
// "auth_id": "…"}. encoding/json decodes them by reflection, about 4 % of a
// start's server CPU. scanFlatStrings reads the plain ones directly and
// says false for anything else, which the caller then hands to
// encoding/json: so every body, plain or not, valid or not, gets exactly
// encoding/json's result and errors (TestFlatJSONMatchesEncodingJSON).

// flatField is one string field of a flat object.
type flatField struct {
	name string
	dst  *string
	// seen, when set, records whether the field ended up holding a string:
	// a *string field, which null sets back to nil.
	seen *bool
}

// scanFlatStrings fills fields from body if body is one JSON object whose
// keys are exactly fields' names and whose values are strings of printable
// ASCII without escapes, or null. Unknown or differently cased keys,
// escapes, other value types and trailing data all answer false, leaving
// the decision to encoding/json; fields may then hold partial values, so
// callers scan into a zero value and keep it only on true.
func scanFlatStrings(body []byte, fields ...flatField) bool {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	for {
		key, next, ok := plainString(body, i)
		if !ok {
			return false
		}
		var f *flatField
		for k := range fields {
			if fields[k].name == key {
				f = &fields[k]
				break
			}
		}
		if f == nil {
			return false // encoding/json matches keys case-insensitively: let it
		}
		i = skipSpace(body, next)
		if i == len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		if i+4 <= len(body) && string(body[i:i+4]) == "null" {
			// encoding/json leaves a string as it was and sets a pointer to nil.
			if f.seen != nil {
				*f.seen = false
			}
			i += 4
		} else {
			value, next, ok := plainString(body, i)
			if !ok {
				return false
			}
			*f.dst = value
			if f.seen != nil {
				*f.seen = true
			}
			i = next
		}
		i = skipSpace(body, i)
		if i == len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// plainString reads a JSON string at body[i] made of printable ASCII
// without a backslash, and returns it and the index after its closing quote.
func plainString(body []byte, i int) (string, int, bool) {
	if i == len(body) || body[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			return string(body[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", 0, false
		}
	}
	return "", 0, false
}

func skipSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// fastDecoder is a request that can read a plain body without reflection;
// decode falls back to encoding/json when decodeFast says false.
type fastDecoder interface {
	decodeFast(body []byte) bool
}

// startRequest is the body of POST …/auth.
type startRequest struct {
	Method string `json:"method"`
}

func (r *startRequest) decodeFast(body []byte) bool {
	var v startRequest
	if !scanFlatStrings(body, flatField{name: "method", dst: &v.Method}) {
		return false
	}
	*r = v
	return true
}

// checkRequest is the body of PUT …/auth.
type checkRequest struct {
	Token  string  `json:"token"`
	Method string  `json:"method"`
	AuthID *string `json:"auth_id"` // the Java client may send null
}

func (r *checkRequest) decodeFast(body []byte) bool {
	var (
		v         checkRequest
		authID    string
		hasAuthID bool
	)
	if !scanFlatStrings(body, flatField{name: "token", dst: &v.Token}, flatField{name: "method", dst: &v.Method},
		flatField{name: "auth_id", dst: &authID, seen: &hasAuthID}) {
		return false
	}
	if hasAuthID {
		v.AuthID = &authID
	}
	*r = v
	return true
}
