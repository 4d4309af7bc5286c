package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/verityhq/verity"
)

// maxBodyBytes bounds every request body but bulk registrations: the
// largest legitimate one is a settings change of a few hundred bytes.
const maxBodyBytes = 64 << 10

// maxBulkBodyBytes bounds a bulk registration of app.MaxBulkUsers users.
const maxBulkBodyBytes = 1 << 20

// writeJSON writes v with status. Encoding errors cannot reach the client
// once the header is out, so they are ignored.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status, buf = http.StatusInternalServerError, *bytes.NewBufferString(`{"message":"internal error","code":"internal"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeJSONBytes writes an already encoded JSON body.
func writeJSONBytes(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// decodeJSON reads the request body as one JSON object into v. Unknown
// fields are tolerated: Verigator clients send fields (auth_id, method) that
// some endpoints do not use.
func decodeJSON(r *http.Request, v any) error {
	return decode(r, v, false)
}

// decodeJSONStrict is decodeJSON that refuses unknown fields, for Verity's
// own extension endpoints where a typo must not pass silently.
func decodeJSONStrict(r *http.Request, v any) error {
	return decode(r, v, true)
}

func decode(r *http.Request, v any, strict bool) error {
	body, err := readBody(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return verity.Errorf(verity.EINVALID, "request body is larger than %d bytes", tooBig.Limit)
		}
		return verity.Errorf(verity.EINVALID, "could not read request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return verity.Errorf(verity.EINVALID, "request body must be a JSON object")
	}
	if fast, ok := v.(fastDecoder); ok && !strict && fast.decodeFast(body) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return invalidJSON(err)
	}
	if dec.More() {
		return verity.Errorf(verity.EINVALID, "request body must be a single JSON object")
	}
	return nil
}

// readBody reads the whole request body. With a Content-Length (every
// Verigator client sends one) the buffer is made to measure, where
// io.ReadAll starts at 512 bytes: a check's body is some twenty. What the
// header claims is believed only up to maxBodyBytes, and the route's
// MaxBytesReader bounds what is read whatever it claims.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength < 0 {
		return io.ReadAll(r.Body)
	}
	// One byte more than announced, so that reading to EOF does not grow it.
	body := make([]byte, 0, min(r.ContentLength, maxBodyBytes)+1)
	for {
		n, err := r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return body, err
		}
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)] // a bulk body: grow
		}
	}
}

func invalidJSON(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return verity.Errorf(verity.EINVALID, "request body must be a JSON object")
		}
		return verity.Errorf(verity.EINVALID, "%s must be a %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) || errors.Is(err, io.ErrUnexpectedEOF) {
		return verity.Errorf(verity.EINVALID, "request body is not valid JSON")
	}
	// DisallowUnknownFields reports `json: unknown field "x"`: pass the name on.
	return verity.Errorf(verity.EINVALID, "invalid request body: %s", trimJSONPrefix(err.Error()))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "float64":
		return "number"
	case "bool":
		return "boolean"
	default:
		return goKind
	}
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
