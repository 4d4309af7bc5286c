// Package verity holds Verity's domain: the types every layer shares, the
// interfaces the backends implement (Store, Sender) and the Error type whose
// codes the HTTP layer maps to statuses. It depends on the standard library only.
//
// Layout: app/ holds the business rules, sqlite/ the storage backend,
// storetest/ the conformance suite every backend runs, httpapi/ the Verigator
// v1 wire protocol, sender/ the delivery providers and cmd/verity the binary.
package verity

import "time"

// TimeFormat is the Verigator timestamp layout: UTC, microseconds, no zone.
const TimeFormat = "2006-01-02T15:04:05.000000"

// FormatTime renders t the way Verigator clients expect ("ctime").
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }
