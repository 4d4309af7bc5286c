package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/sender/webhook"
)

// handleSMS is the gateway side from docs/webhook-sender.md.
func handleSMS(secret []byte, deliver func(to, text string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		err = webhook.Verify(secret,
			r.Header.Get(webhook.TimestampHeader),
			r.Header.Get(webhook.SignatureHeader),
			body, time.Now(), 5*time.Minute)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var msg struct {
			ID, To, From, Text string
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		deliver(msg.To, msg.Text)
		w.WriteHeader(http.StatusAccepted)
	}
}

func ExampleVerify() {
	secret := []byte("0123456789abcdef-example")
	gateway := httptest.NewServer(handleSMS(secret, func(to, text string) {
		fmt.Printf("deliver %q to %s\n", text, to)
	}))
	defer gateway.Close()

	s, err := webhook.New(webhook.Config{URL: gateway.URL, Secret: secret})
	if err != nil {
		panic(err)
	}
	m := verity.Message{ID: "1", To: "+37255512345", From: "Verity", Text: "Your PIN is 1234"}
	fmt.Println("send:", s.Send(context.Background(), m))

	wrong, _ := webhook.New(webhook.Config{URL: gateway.URL, Secret: []byte("not-the-shared-secret")})
	fmt.Println("send:", verity.ErrorCode(wrong.Send(context.Background(), m)))
	// Output:
	// deliver "Your PIN is 1234" to +37255512345
	// send: <nil>
	// send: upstream
}
