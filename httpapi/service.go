package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/verityhq/verity"
)

type serviceJSON struct {
	ID    string `json:"id"`
	CTime string `json:"ctime"`
	Name  string `json:"name"`
	FQDN  string `json:"fqdn"`
}

func toServiceJSON(s *verity.Service) serviceJSON {
	return serviceJSON{ID: s.ID, CTime: verity.FormatTime(s.CreatedAt), Name: s.Name, FQDN: s.FQDN}
}

func (s *Server) createService(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		FQDN string `json:"fqdn"`
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	svc, err := s.app.CreateService(r.Context(), acct, req.Name, req.FQDN)
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toServiceJSON(svc))
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	svc, err := s.app.Service(r.Context(), acct, r.PathValue("sid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toServiceJSON(svc))
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	if err := s.app.DeleteService(r.Context(), acct, r.PathValue("sid")); err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct{}{})
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	svc, err := s.app.Service(r.Context(), acct, r.PathValue("sid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, svc.Settings)
}

// patchSettings changes only the fields present in the body; unknown fields
// are refused so that a misspelt setting cannot pass silently.
func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		Error(w, r, verity.Errorf(verity.EINVALID, "could not read request body (at most %d bytes)", maxBodyBytes))
		return
	}
	if !json.Valid(body) || len(bytes.TrimSpace(body)) == 0 || bytes.TrimSpace(body)[0] != '{' {
		Error(w, r, verity.Errorf(verity.EINVALID, "request body must be a JSON object"))
		return
	}
	settings, err := s.app.UpdateSettings(r.Context(), acct, r.PathValue("sid"), func(cur *verity.Settings) error {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cur); err != nil {
			return invalidJSON(err)
		}
		return nil
	})
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, settings)
}
