// Package webhook delivers Verity's text messages by POSTing them, signed,
// to an HTTP endpoint of your own SMS gateway.
//
// # Payload
//
// Each message is one POST with Content-Type application/json and the body
//
//	{"id":"…","to":"+3725550000","from":"Verity","text":"Your PIN is 1234",
//	 "service_id":"…","created_at":"2024-05-01T12:00:00.000000Z"}
//
// created_at is RFC 3339 in UTC with microseconds. The id is stable across
// retries, so a gateway can use it to drop duplicates.
//
// # Signature
//
// Two headers authenticate the body:
//
//	X-Verity-Timestamp: <unix seconds when the request was signed>
//	X-Verity-Signature: v1=<lower-case hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// The gateway recomputes the HMAC over the raw body bytes (before parsing
// them), compares it in constant time, and rejects timestamps older or newer
// than a few minutes so a captured request cannot be replayed later. Verify
// does exactly that.
//
// # Answers
//
// Any 2xx status means the gateway accepted the message. Any other status,
// including a redirect (redirects are never followed), is a refusal and Send
// returns an EUPSTREAM error. A connection failure or a request slower than
// Config.Timeout returns EUNAVAILABLE. Neither error ever carries the body,
// the PIN or the phone number.
//
// docs/webhook-sender.md describes the scheme for gateway authors, with
// verification snippets in Go and Python.
package webhook
