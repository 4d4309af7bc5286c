package logsender_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verityhq/verity"
	logsender "github.com/verityhq/verity/sender/log"
)

// eest is shared so messages built twice compare equal with ==.
var eest = time.FixedZone("EEST", 3*3600)

// message returns the i-th test message.
func message(i int) verity.Message {
	return verity.Message{
		ID:        fmt.Sprintf("msg-%d", i),
		To:        "+37255512345",
		From:      "Verity",
		Text:      fmt.Sprintf("Your PIN is %06d", i),
		ServiceID: "svc-1",
		CreatedAt: time.Date(2024, 5, 1, 14, 30, 15, 123456789, eest).Add(time.Duration(i) * time.Second),
	}
}

// MustSend sends m or fails the test.
func MustSend(tb testing.TB, s *logsender.Sender, m verity.Message) {
	tb.Helper()
	if err := s.Send(context.Background(), m); err != nil {
		tb.Fatalf("Send(%s): %v", m.ID, err)
	}
}

func TestSend(t *testing.T) {
	t.Run("prints the warning banner and the whole message", func(t *testing.T) {
		var buf bytes.Buffer
		s := logsender.New(&buf, 0)
		MustSend(t, s, message(7))

		out := buf.String()
		for _, want := range []string{
			logsender.Banner,
			"DEVELOPMENT SMS SINK (not delivered; never use in production)",
			`id:         "msg-7"`,
			`to:         "+37255512345"`,
			`from:       "Verity"`,
			`text:       "Your PIN is 000007"`,
			`service_id: "svc-1"`,
			"created_at: 2024-05-01T11:30:22.123456Z",
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("output does not contain %q:\n%s", want, out)
			}
		}
	})

	t.Run("keeps a text with newlines on one line", func(t *testing.T) {
		var buf bytes.Buffer
		s := logsender.New(&buf, 0)
		m := message(1)
		m.Text = "PIN 1\n" + logsender.Banner
		MustSend(t, s, m)

		if got, want := strings.Count(buf.String(), logsender.Banner+"\n"), 1; got != want {
			t.Fatalf("banner lines = %d, want %d:\n%s", got, want, buf.String())
		}
	})

	t.Run("a failing writer is unavailable and keeps nothing", func(t *testing.T) {
		s := logsender.New(failingWriter{}, 0)
		err := s.Send(context.Background(), message(1))
		if got, want := verity.ErrorCode(err), verity.EUNAVAILABLE; got != want {
			t.Fatalf("code = %q, want %q", got, want)
		}
		if got := len(s.Messages()); got != 0 {
			t.Fatalf("len(Messages) = %d, want 0", got)
		}
	})

	t.Run("a cancelled context is unavailable", func(t *testing.T) {
		var buf bytes.Buffer
		s := logsender.New(&buf, 0)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.Send(ctx, message(1))
		if !errors.Is(err, context.Canceled) || verity.ErrorCode(err) != verity.EUNAVAILABLE {
			t.Fatalf("Send = %v, want EUNAVAILABLE wrapping context.Canceled", err)
		}
		if buf.Len() != 0 {
			t.Fatalf("output = %q, want nothing", buf.String())
		}
	})

	t.Run("a nil writer discards the output but keeps the message", func(t *testing.T) {
		s := logsender.New(nil, 0)
		MustSend(t, s, message(1))
		if got := len(s.Messages()); got != 1 {
			t.Fatalf("len(Messages) = %d, want 1", got)
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestMessages(t *testing.T) {
	t.Run("keeps exactly the last 100, newest first", func(t *testing.T) {
		s := logsender.New(nil, 100)
		for i := range 250 {
			MustSend(t, s, message(i))
		}
		got := s.Messages()
		if len(got) != 100 {
			t.Fatalf("len(Messages) = %d, want 100", len(got))
		}
		for k, m := range got {
			if want := message(249 - k); m != want {
				t.Fatalf("Messages[%d] = %+v, want %+v", k, m, want)
			}
		}
	})

	t.Run("returns everything while the ring is not full", func(t *testing.T) {
		s := logsender.New(nil, 100)
		for i := range 3 {
			MustSend(t, s, message(i))
		}
		var ids []string
		for _, m := range s.Messages() {
			ids = append(ids, m.ID)
		}
		if got, want := strings.Join(ids, ","), "msg-2,msg-1,msg-0"; got != want {
			t.Fatalf("ids = %s, want %s", got, want)
		}
	})

	t.Run("a keep of zero means the default", func(t *testing.T) {
		s := logsender.New(nil, 0)
		for i := range logsender.DefaultKeep + 5 {
			MustSend(t, s, message(i))
		}
		if got, want := len(s.Messages()), logsender.DefaultKeep; got != want {
			t.Fatalf("len(Messages) = %d, want %d", got, want)
		}
	})

	t.Run("returns a copy", func(t *testing.T) {
		s := logsender.New(nil, 0)
		MustSend(t, s, message(1))
		s.Messages()[0].Text = "changed"
		if got, want := s.Messages()[0].Text, message(1).Text; got != want {
			t.Fatalf("Text = %q, want %q", got, want)
		}
	})

	t.Run("is empty before the first send", func(t *testing.T) {
		if got := logsender.New(nil, 0).Messages(); len(got) != 0 {
			t.Fatalf("Messages = %v, want none", got)
		}
	})
}

func TestConcurrentSends(t *testing.T) {
	// bytes.Buffer is not safe for concurrent use: without the sink's lock
	// -race reports the writes, and the counts below go wrong.
	var buf bytes.Buffer
	s := logsender.New(&buf, 100)
	const workers, each = 16, 50

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := s.Send(context.Background(), message(w*each+i)); err != nil {
					t.Errorf("Send: %v", err)
				}
				_ = s.Messages()
			}
		})
	}
	wg.Wait()

	if got, want := strings.Count(buf.String(), logsender.Banner), workers*each; got != want {
		t.Fatalf("banners = %d, want %d", got, want)
	}
	got := s.Messages()
	if len(got) != 100 {
		t.Fatalf("len(Messages) = %d, want 100", len(got))
	}
	seen := map[string]bool{}
	for _, m := range got {
		if m.ID == "" || seen[m.ID] {
			t.Fatalf("Messages holds an empty or repeated id %q", m.ID)
		}
		seen[m.ID] = true
	}
}
