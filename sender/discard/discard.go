// Package discard is a sender that drops every message: it measures Verity
// without delivery cost in benchmarks. It is allowed only in development mode.
package discard

import (
	"context"
	"sync/atomic"

	"github.com/verityhq/verity"
)

// Sender accepts and drops messages, counting them.
type Sender struct{ sent atomic.Int64 }

var _ verity.Sender = (*Sender)(nil)

// Send drops m.
func (s *Sender) Send(context.Context, verity.Message) error {
	s.sent.Add(1)
	return nil
}

// Sent is how many messages were dropped.
func (s *Sender) Sent() int64 { return s.sent.Load() }
