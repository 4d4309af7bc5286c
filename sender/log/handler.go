package logsender

import (
	"encoding/json"
	"net/http"
)

// messageJSON is one message as the handler shows it.
type messageJSON struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	From      string `json:"from"`
	Text      string `json:"text"`
	ServiceID string `json:"service_id"`
	CreatedAt string `json:"created_at"`
}

// Handler serves the kept messages, newest first, as JSON to GET requests;
// like the sink itself it shows PINs and belongs only in a --dev server.
func (s *Sender) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "method not allowed"})
			return
		}
		msgs := s.Messages()
		out := struct {
			Messages []messageJSON `json:"messages"`
		}{Messages: make([]messageJSON, 0, len(msgs))}
		for _, m := range msgs {
			out.Messages = append(out.Messages, messageJSON{
				ID:        m.ID,
				To:        m.To,
				From:      m.From,
				Text:      m.Text,
				ServiceID: m.ServiceID,
				CreatedAt: m.CreatedAt.UTC().Format(timeFormat),
			})
		}
		// The body holds live PINs: no cache may keep a copy.
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, out)
	})
}

// writeJSON writes v as a JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
