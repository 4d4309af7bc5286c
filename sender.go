package verity

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Message is one text to deliver.
type Message struct {
	ID        string    `json:"id"`
	To        string    `json:"to"`   // E.164
	From      string    `json:"from"` // sender name
	Text      string    `json:"text"` // contains the PIN: never log it
	ServiceID string    `json:"service_id"`
	CreatedAt time.Time `json:"created_at"`
}

// LogValue keeps the PIN and the full number out of any log line that
// mentions a message.
func (m Message) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", m.ID),
		slog.String("to", MaskPhone(m.To)),
		slog.String("service_id", m.ServiceID),
	)
}

// Sender delivers messages. Send returns nil only when the provider accepted
// the message; errors should be *Error with EUPSTREAM (the provider refused)
// or EUNAVAILABLE (it could not be reached). When the provider may have
// taken the message all the same (it received the request and did not
// answer in time, or the connection broke before its answer), the error's
// chain must hold ErrMaybeDelivered: the send then counts against the
// user's limits, though the start fails.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrMaybeDelivered marks a failed send whose message may still reach the
// phone. Refunding such sends would let every start that times out against
// a slow gateway send one more message past the user's limits.
var ErrMaybeDelivered = errors.New("the provider received the message and did not answer")
