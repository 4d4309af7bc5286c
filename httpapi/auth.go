package httpapi

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
)

func (s *Server) startAuth(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		Method string `json:"method"`
	}
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	started, err := s.app.StartVerification(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"), req.Method)
	if err != nil {
		Error(w, r, err)
		return
	}
	out := struct {
		Method string  `json:"method"`
		AuthID *string `json:"auth_id"` // null when nothing was sent
	}{Method: started.Method}
	if started.AuthID != "" {
		out.AuthID = &started.AuthID
	}
	writeJSON(w, http.StatusOK, out)
}

type checkStatusJSON struct {
	Throttled bool   `json:"throttled"`
	Expired   bool   `json:"expired"`
	Invalid   bool   `json:"invalid"`
	Result    string `json:"result"`
}

func (s *Server) checkAuth(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		Token  string  `json:"token"`
		Method string  `json:"method"`
		AuthID *string `json:"auth_id"` // the Java client may send null
	}
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
