package httpapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// clientBodies are the start's and check's bodies as the Python and Java
// clients, curl users and the benchmark send them: the fast path takes them.
var clientBodies = []string{
	`{"method": "sms"}`, `{"method":"totp"}`, `{"token": "123456"}`, `{"token":"123456","auth_id":"0194e7a2-8c1b-7d4e-9f00-1a2b3c4d5e6f"}`,
	`{"method": "totp", "token": "123456"}`, `{"token": "1234", "auth_id": null}`, `{"auth_id": null, "token": "1", "method": "sms"}`,
	"\n\t{ \"method\" : \"sms\" }\r\n", `{}`, ` { } `, `{"token":""}`,
}

// flatJSONBodies are clientBodies and the near misses the fast path must
// leave to encoding/json.
var flatJSONBodies = append(slices.Clone(clientBodies),
	// Duplicates: the last one counts; null leaves a string alone and
	// turns a pointer back to nil.
	`{"method":"sms","method":"totp"}`, `{"method":"sms","method":null}`, `{"auth_id":"a","auth_id":null}`, `{"auth_id":null,"auth_id":"b"}`,
	// Left to encoding/json.
	`{"Method":"sms"}`, `{"METHOD":"sms"}`, `{"unknown":"x","method":"sms"}`, `{"token":123456}`, `{"token":"12\u00334"}`,
	`{"token":"é"}`, `{"token":"a\"b"}`, `{"token":true}`, `{"token":["1"]}`, `{"token":{"a":"b"}}`, `{"token":nul}`,
	`{"token":"1",}`, `{"token":"1"`, `{"token":"1"}{}`, `{"token":"1"} x`, `{"token" "1"}`, `{,}`, `[]`, `"sms"`, `null`,
	`{"token":"1"}}`, `{"method":"sms" "token":"1"}`, `{"token":"1"}`+"\x00", "{\"token\":\"a\x01\"}", `{"method":"a<b"}`,
)

// TestFlatJSONMatchesEncodingJSON: whatever the fast path accepts decodes
// to what encoding/json decodes, and the bodies clients send take it.
func TestFlatJSONMatchesEncodingJSON(t *testing.T) {
	for _, body := range flatJSONBodies {
		checkFlatJSON(t, []byte(body))
	}
	for _, body := range clientBodies {
		if !(&checkRequest{}).decodeFast([]byte(body)) {
			t.Errorf("the check's fast path refused %q, a body clients send", body)
		}
	}
	if !(&startRequest{}).decodeFast([]byte(`{"method": "sms"}`)) {
		t.Error("the start's fast path refused {\"method\": \"sms\"}")
	}
}

func FuzzFlatJSON(f *testing.F) {
	for _, body := range flatJSONBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(checkFlatJSON)
}

// checkFlatJSON decodes body both ways, into both request types, and fails
// when the fast path accepts a body that encoding/json refuses or reads
// differently.
func checkFlatJSON(t *testing.T, body []byte) {
	t.Helper()
	for _, newReq := range []func() fastDecoder{
		func() fastDecoder { return &checkRequest{} },
		func() fastDecoder { return &startRequest{} },
	} {
		fast, slow := newReq(), newReq()
		if !fast.decodeFast(body) {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(slow); err != nil || dec.More() {
			t.Errorf("%T: the fast path accepted %q, which encoding/json refuses (%v, more %v)", fast, body, err, dec.More())
			continue
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("%T: %q decodes to %+v by the fast path, %+v by encoding/json", fast, body, fast, slow)
		}
	}
}

// TestStartBodyMatchesEncodingJSON: the start's answer, by hand or not, is
// byte for byte what encoding/json writes.
func TestStartBodyMatchesEncodingJSON(t *testing.T) {
	for _, c := range []struct{ method, authID string }{
		{"sms", "0194e7a2-8c1b-7d4e-9f00-1a2b3c4d5e6f"}, {"totp", ""}, {"sms", "a<b"}, {"s\"ms", "x"}, {"é", "\x01"}, {"", ""},
	} {
		var want bytes.Buffer
		out := struct {
			Method string  `json:"method"`
			AuthID *string `json:"auth_id"`
		}{Method: c.method}
		if c.authID != "" {
			out.AuthID = &c.authID
		}
		if err := json.NewEncoder(&want).Encode(out); err != nil {
			t.Fatal(err)
		}
		if got := startBody(c.method, c.authID); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("startBody(%q, %q) = %s, want %s", c.method, c.authID, got, want.Bytes())
		}
	}
}
