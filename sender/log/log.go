// Package logsender is the development SMS sink: instead of delivering a
// message it prints it, PIN included, and keeps the latest ones in memory for
// a page or a test to read. It exists for --dev only and must never be wired
// into a production server, because printing the text is its whole purpose.
package logsender

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/verityhq/verity"
)

// DefaultKeep is how many messages New keeps when given a keep of zero or less.
const DefaultKeep = 100

// Banner opens every block Send writes.
const Banner = "=== DEVELOPMENT SMS SINK (not delivered; never use in production) ==="

// timeFormat is RFC 3339 in UTC with microseconds, the precision Verity's
// stores and the webhook sender use.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Sender prints messages instead of delivering them; it implements verity.Sender.
type Sender struct {
	mu   sync.Mutex // serialises writes to w as well as the ring
	w    io.Writer
	ring []verity.Message // fixed capacity, oldest overwritten first
	next int              // index the next message goes to
	n    int              // messages held, at most len(ring)
}

var _ verity.Sender = (*Sender)(nil)

// New returns a sink that writes to w (discarded if nil) and keeps the last
// keep messages.
func New(w io.Writer, keep int) *Sender {
	if w == nil {
		w = io.Discard
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Sender{w: w, ring: make([]verity.Message, keep)}
}

// Send writes m to the sink's writer in a clearly marked block and keeps it.
func (s *Sender) Send(ctx context.Context, m verity.Message) error {
	const op = "logsender.Send"
	if err := ctx.Err(); err != nil {
		return &verity.Error{Code: verity.EUNAVAILABLE, Message: "development sms sink unavailable", Op: op, Err: err}
	}

	// Quoted values keep one field per line, so a text with newlines cannot
	// fake a second block.
	var b strings.Builder
	b.WriteString("\n" + Banner + "\n")
	fmt.Fprintf(&b, "id:         %s\n", strconv.Quote(m.ID))
	fmt.Fprintf(&b, "service_id: %s\n", strconv.Quote(m.ServiceID))
	fmt.Fprintf(&b, "created_at: %s\n", m.CreatedAt.UTC().Format(timeFormat))
	fmt.Fprintf(&b, "to:         %s\n", strconv.Quote(m.To))
	fmt.Fprintf(&b, "from:       %s\n", strconv.Quote(m.From))
	fmt.Fprintf(&b, "text:       %s\n", strconv.Quote(m.Text))
	b.WriteString("=== END OF DEVELOPMENT SMS ===\n\n")

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		// Not shown, not accepted: the caller may retry, and the ring stays
		// a list of what a developer could actually have read.
		return &verity.Error{Code: verity.EUNAVAILABLE, Message: "development sms sink unavailable", Op: op, Err: err}
	}
	s.ring[s.next] = m
	s.next = (s.next + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
	return nil
}

// Messages returns a copy of the kept messages, newest first.
func (s *Sender) Messages() []verity.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]verity.Message, 0, s.n)
	for i := 1; i <= s.n; i++ {
		out = append(out, s.ring[(s.next-i+len(s.ring))%len(s.ring)])
	}
	return out
}
