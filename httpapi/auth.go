package httpapi

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
)

func (s *Server) startAuth(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req startRequest
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	started, err := s.app.StartVerification(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"), req.Method)
	if err != nil {
		Error(w, r, err)
		return
	}
	noteOutcome(w, started.Method, "") // "totp" may have fallen back to "sms"
	writeJSONBytes(w, http.StatusOK, startBody(started.Method, started.AuthID))
}

// startBody encodes a start's answer, {"method":…,"auth_id":…} with a null
// auth_id when nothing was sent, exactly as encoding/json does: by hand
// when both are plain (they always are: a method name and a UUID), else by
// encoding/json.
func startBody(method, authID string) []byte {
	if isPlainJSON(method) && isPlainJSON(authID) {
		b := make([]byte, 0, 32+len(method)+len(authID))
		b = append(append(append(b, `{"method":"`...), method...), `","auth_id":`...)
		if authID == "" {
			b = append(b, "null"...)
		} else {
			b = append(append(append(b, '"'), authID...), '"')
		}
		return append(b, "}\n"...)
	}
	out := struct {
		Method string  `json:"method"`
		AuthID *string `json:"auth_id"`
	}{Method: method}
	if authID != "" {
		out.AuthID = &authID
	}
	b, _ := json.Marshal(out) // strings only: cannot fail
	return append(b, '\n')    // as json.Encoder writes it
}

// isPlainJSON reports whether s is written in JSON as it is: printable
// ASCII that encoding/json neither escapes nor, by default, HTML-escapes.
func isPlainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

type checkStatusJSON struct {
	Throttled bool   `json:"throttled"`
	Expired   bool   `json:"expired"`
	Invalid   bool   `json:"invalid"`
	Result    string `json:"result"`
}

func (s *Server) checkAuth(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req checkRequest
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	check := app.Check{Token: req.Token, Method: req.Method}
	if req.AuthID != nil {
		check.AuthID = *req.AuthID
	}
	res, err := s.app.CheckVerification(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"), check)
	if err != nil {
		Error(w, r, err)
		return
	}
	body, err := checkBody(res)
	if err != nil {
		Error(w, r, err)
		return
	}
	noteOutcome(w, res.Result, "")
	writeJSONBytes(w, http.StatusOK, body)
}

// checkBodies holds the encoded answer of each (method, verified, result)
// seen: the set is small and fixed, and a check is the hottest request, so
// each body is encoded once instead of per request.
var checkBodies sync.Map // checkKey → []byte

type checkKey struct {
	method, result string
	verified       bool
}

func checkBody(res app.Checked) ([]byte, error) {
	key := checkKey{res.Method, res.Result, res.Verified}
	if b, ok := checkBodies.Load(key); ok {
		return b.([]byte), nil
	}
	b, err := json.Marshal(struct {
		Method   string          `json:"method"`
		Verified bool            `json:"verified"`
		Status   checkStatusJSON `json:"status"`
	}{
		Method:   res.Method,
		Verified: res.Verified,
		Status: checkStatusJSON{
			Throttled: res.Result == app.ResultThrottled,
			Expired:   res.Result == app.ResultExpired,
			Invalid:   res.Result == app.ResultInvalid,
			Result:    res.Result,
		},
	})
	if err != nil { // strings and bools only: cannot fail
		return nil, err
	}
	b = append(b, '\n') // as json.Encoder writes it
	checkBodies.Store(key, b)
	return b, nil
}
