package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// wireClient replays requests byte for byte the way one published Verigator
// client sends them, over a real HTTP connection.
type wireClient struct {
	tb          testing.TB
	http        *http.Client
	apiURL      string            // what the client joins paths to, without a trailing slash
	headers     map[string]string // on every request
	bodyHeaders map[string]string // added when the request has a body
}

// newPythonClient is messente.verigator's RestClient: the endpoint is
// stripped of slashes and joined with "/"; POST and PUT add Content-Type
// and Accept; requests' own defaults ride along.
func newPythonClient(tb testing.TB, srv *httptest.Server, auth string) *wireClient {
	return &wireClient{
		tb: tb, http: srv.Client(),
		apiURL: strings.Trim(srv.URL+"/", "/"),
		headers: map[string]string{
			"X-Service-Auth":  auth,
			"User-Agent":      "python-requests/2.31.0",
			"Accept-Encoding": "gzip, deflate",
			"Accept":          "*/*",
			"Connection":      "keep-alive",
		},
		bodyHeaders: map[string]string{"Content-Type": "application/json", "Accept": "application/json"},
	}
}

// newJavaClient is com.messente.verigator's Http: apiBaseUrl + "/" +
// apiVersion, then "/" + endpoint; HttpURLConnection's default Accept;
// Content-Type only with a body.
func newJavaClient(tb testing.TB, srv *httptest.Server, auth string) *wireClient {
	return &wireClient{
		tb: tb, http: srv.Client(),
		apiURL: srv.URL + "/" + "v1",
		headers: map[string]string{
			"X-Service-Auth": auth,
			"User-Agent":     "Java/17.0.9",
			"Accept":         "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
			"Connection":     "keep-alive",
		},
		bodyHeaders: map[string]string{"Content-Type": "application/json"},
	}
}

// call sends one request to apiURL + "/" + path and returns the checked answer.
func (c *wireClient) call(method, path, body string) response {
	c.tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.apiURL+"/"+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	if body != "" {
		for k, v := range c.bodyHeaders {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return checkResponse(c.tb, method+" "+path, resp.StatusCode, resp.Header, raw)
}

func TestVerigatorClientFlow(t *testing.T) {
	t.Run("the Python client's requests go through the whole flow", func(t *testing.T) {
		e := newEnv(t)
		srv := httptest.NewServer(e.handler)
		defer srv.Close()
		py := newPythonClient(t, srv, e.account("acme"))

		// services.create(domain, name)
		svc := py.call("POST", "v1/service/service", `{"fqdn": "www.example.com", "name": "My service"}`)
		wantStatus(t, svc, http.StatusOK)
		wantBody(t, svc.Body, map[string]any{"id": nonEmptyString, "ctime": startCTime, "name": "My service", "fqdn": "www.example.com"})
		sid := svc.Body["id"].(string)
		wantError(t, py.call("POST", "v1/service/service", `{"fqdn": "www.example.com", "name": "My service"}`), http.StatusConflict, "conflict")

		// services.get(id)
		got := py.call("GET", "v1/service/service/"+sid, "")
		wantStatus(t, got, http.StatusOK)
		wantBody(t, got.Body, svc.Body)

		// users.create(service_id, number, username)
		wantError(t, py.call("POST", "v1/service/service/"+sid+"/users", `{"phone_number": "5555555", "id_in_service": "alice"}`),
			http.StatusUnprocessableEntity, "invalid")
		user := py.call("POST", "v1/service/service/"+sid+"/users", `{"phone_number": "+3725555555", "id_in_service": "alice"}`)
		wantStatus(t, user, http.StatusOK)
		wantBody(t, user.Body, map[string]any{"id": nonEmptyString, "ctime": startCTime, "id_in_service": "alice"})
		uid := user.Body["id"].(string)
		wantError(t, py.call("POST", "v1/service/service/"+sid+"/users", `{"phone_number": "+3725555555", "id_in_service": "alice"}`),
			http.StatusConflict, "conflict")

		// users.get_all(service_id) and users.get(service_id, id)
		all := py.call("GET", "v1/service/service/"+sid+"/users", "")
		wantStatus(t, all, http.StatusOK)
		wantBody(t, all.Body, map[string]any{"total": 1.0, "users": []any{user.Body}})
		one := py.call("GET", "v1/service/service/"+sid+"/users/"+uid, "")
		wantStatus(t, one, http.StatusOK)
		wantBody(t, one.Body, user.Body)
		wantError(t, py.call("GET", "v1/service/service/"+sid+"/users/no-such-user", ""), http.StatusNotFound, "not_found")

		// auth.verify before anything was started: NoSuchResourceError.
		wantError(t, py.call("PUT", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms", "token": "123456"}`),
			http.StatusNotFound, "not_found")

		// auth.initiate(service_id, user_id, "sms"): the answer is only parsed.
		start := py.call("POST", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms"}`)
		wantStatus(t, start, http.StatusOK)
		wantBody(t, start.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})
		msgs := e.gw.messages()
		if len(msgs) != 1 || msgs[0].To != "+3725555555" || msgs[0].From != "Verity" {
			t.Fatalf("gateway messages = %+v, want one from Verity to +3725555555", msgs)
		}
		pin := pinOf(t, msgs[0].Text)

		// The documented loop: verify until verified. Wrong tries are bounded.
		verify := func(token string) response {
			return py.call("PUT", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms", "token": "`+token+`"}`)
		}
		wantCheck(t, verify(wrongPIN(pin, 0)), false, "INVALID")
		wantCheck(t, verify(wrongPIN(pin, 1)), false, "INVALID")
		wantCheck(t, verify(pin), true, "VERIFIED")
		wantCheck(t, verify(pin), false, "INVALID") // once means once

		// A new login at once, then the PIN expires unused.
		wantStatus(t, py.call("POST", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms"}`), http.StatusOK)
		_, pin = pinFromLast(t, e)
		e.clock.Advance(5*time.Minute + time.Second)
		wantCheck(t, verify(pin), false, "EXPIRED")

		// A resend too soon is refused with Retry-After; the client raises VerigatorError.
		e.clock.Advance(time.Second)
		wantStatus(t, py.call("POST", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms"}`), http.StatusOK)
		r := py.call("POST", "v1/service/service/"+sid+"/users/"+uid+"/auth", `{"method": "sms"}`)
		wantRateLimited(t, r, 30)

		// WrongCredentialsError and ResourceForbiddenError carry a message.
		bad := newPythonClient(t, srv, "acme:not-the-password")
		wantError(t, bad.call("GET", "v1/service/service/"+sid, ""), http.StatusUnauthorized, "unauthorized")
		other := newPythonClient(t, srv, e.account("globex"))
		wantError(t, other.call("GET", "v1/service/service/"+sid, ""), http.StatusForbidden, "forbidden")

		// users.delete and services.delete: 202 with a JSON object each.
		wantError(t, py.call("DELETE", "v1/service/service/"+sid, ""), http.StatusConflict, "conflict")
		del := py.call("DELETE", "v1/service/service/"+sid+"/users/"+uid, "")
		wantStatus(t, del, http.StatusAccepted)
		wantBody(t, del.Body, map[string]any{})
		del = py.call("DELETE", "v1/service/service/"+sid, "")
		wantStatus(t, del, http.StatusAccepted)
		wantBody(t, del.Body, map[string]any{})
		wantError(t, py.call("GET", "v1/service/service/"+sid, ""), http.StatusNotFound, "not_found")
	})

	t.Run("the Java client's requests go through the whole flow", func(t *testing.T) {
		e := newEnv(t)
		srv := httptest.NewServer(e.handler)
		defer srv.Close()
		java := newJavaClient(t, srv, e.account("acme"))

		// Verigator.createService(name, fqdn): Gson, name first, no spaces.
		svc := java.call("POST", "service/service", `{"name":"Some example service","fqdn":"www.example.com"}`)
		wantStatus(t, svc, http.StatusOK)
		wantBody(t, svc.Body, map[string]any{"id": nonEmptyString, "ctime": startCTime, "name": "Some example service", "fqdn": "www.example.com"})
		sid := svc.Body["id"].(string)

		// Service.get(verigator, serviceId)
		got := java.call("GET", "service/service/"+sid, "")
		wantStatus(t, got, http.StatusOK)
		wantBody(t, got.Body, svc.Body)

		// service.registerUser(userName, phoneNumber)
		user := java.call("POST", "service/service/"+sid+"/users", `{"phone_number":"+3725555555","id_in_service":"youremail@example.com"}`)
		wantStatus(t, user, http.StatusOK)
		wantBody(t, user.Body, map[string]any{"id": nonEmptyString, "ctime": startCTime, "id_in_service": "youremail@example.com"})
		uid := user.Body["id"].(string)

		// service.getUser(userId) reads the singular path; getUsers the list.
		one := java.call("GET", "service/service/"+sid+"/user/"+uid, "")
		wantStatus(t, one, http.StatusOK)
		wantBody(t, one.Body, user.Body)
		all := java.call("GET", "service/service/"+sid+"/users", "")
		wantStatus(t, all, http.StatusOK)
		wantBody(t, all.Body, map[string]any{"total": 1.0, "users": []any{user.Body}})
		wantError(t, java.call("GET", "service/service/"+sid+"/user/no-such-user", ""), http.StatusNotFound, "not_found")

		// user.authenticateUsingSMS() then verifyPinSms(authId, token).
		start := java.call("POST", "service/service/"+sid+"/users/"+uid+"/auth", `{"method":"sms"}`)
		wantStatus(t, start, http.StatusOK)
		wantBody(t, start.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})
		authID := start.Body["auth_id"].(string)
		pin := pinOf(t, e.gw.message(t, authID).Text)
		verifySMS := func(token string) response {
			return java.call("PUT", "service/service/"+sid+"/users/"+uid+"/auth",
				`{"method":"sms","token":"`+token+`","auth_id":"`+authID+`"}`)
		}
		wantCheck(t, verifySMS(wrongPIN(pin, 0)), false, "INVALID")
		wantCheck(t, verifySMS(pin), true, "VERIFIED")
		wantCheck(t, verifySMS(pin), false, "INVALID")

		// user.authenticateUsingTotp() without an app falls back to SMS; the
		// application then calls verifyPinTotp(token): Gson drops the null auth_id.
		start = java.call("POST", "service/service/"+sid+"/users/"+uid+"/auth", `{"method":"totp"}`)
		wantStatus(t, start, http.StatusOK)
		wantBody(t, start.Body, map[string]any{"method": "sms", "auth_id": nonEmptyString})
		pin = pinOf(t, e.gw.message(t, start.Body["auth_id"].(string)).Text)
		wantCheck(t, java.call("PUT", "service/service/"+sid+"/users/"+uid+"/auth", `{"method":"totp","token":"`+pin+`"}`), true, "VERIFIED")

		// The Java client accepts only 202 for a delete.
		wantError(t, java.call("DELETE", "service/service/"+sid, ""), http.StatusConflict, "conflict")
		wantStatus(t, newPythonClient(t, srv, java.headers["X-Service-Auth"]).call("DELETE", "v1/service/service/"+sid+"/users/"+uid, ""),
			http.StatusAccepted)
		del := java.call("DELETE", "service/service/"+sid, "")
		wantStatus(t, del, http.StatusAccepted)
		wantBody(t, del.Body, map[string]any{})

		if n := len(e.gw.messages()); n != 2 {
			t.Fatalf("gateway received %d messages, want 2", n)
		}
	})
}
