package main

import (
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// capture is the SMS gateway stand-in: Verity's webhook sender POSTs every
// message here, and the benchmark looks PINs up by message id, which is
// the auth_id the start answered. The signature is not verified: this is
// a trusted loopback peer, and verifying would add bench CPU to the run.
type capture struct {
	srv    *http.Server
	url    string
	secret string

	mu   sync.Mutex
	pins map[string]string // message id → PIN
	bad  int               // messages without a PIN
}

// startCapture listens on a loopback port and returns the capture server.
func startCapture() (*capture, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &capture{url: "http://" + ln.Addr().String() + "/sms", secret: randomToken(32), pins: map[string]string{}}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 5 * time.Second}
	go c.srv.Serve(ln)
	return c, nil
}

// serve records one delivered message.
func (c *capture) serve(w http.ResponseWriter, r *http.Request) {
	var m struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &m)
	}
	pin, ok := pinFromText(m.Text)
	c.mu.Lock()
	if err != nil || !ok || m.ID == "" {
		c.bad++
	} else {
		c.pins[m.ID] = pin
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// take returns and forgets the PIN of message id.
func (c *capture) take(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pin, ok := c.pins[id]
	delete(c.pins, id)
	return pin, ok
}

// close stops the capture server.
func (c *capture) close() { c.srv.Close() }

// pinFromText returns the PIN in a message text: the last run of at least
// four digits (Verity's PINs are 4–10 digits; the default template puts
// the PIN last, after the service name, which might hold digits too).
func pinFromText(text string) (string, bool) {
	end := -1
	for i := len(text) - 1; i >= 0; i-- {
		isDigit := text[i] >= '0' && text[i] <= '9'
		switch {
		case isDigit && end < 0:
			end = i + 1
		case !isDigit && end >= 0:
			if end-(i+1) >= 4 {
				return text[i+1 : end], true
			}
			end = -1
		}
	}
	if end >= 4 {
		return text[:end], true
	}
	return "", false
}

// wrongCode returns a code of the same length that differs from code in
// every digit, so that it can never be the right one.
func wrongCode(code string) string {
	b := []byte(code)
	for i, c := range b {
		if c >= '0' && c <= '9' {
			b[i] = '0' + (c-'0'+5)%10
		}
	}
	return string(b)
}

// randomToken returns n random letters and digits.
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
