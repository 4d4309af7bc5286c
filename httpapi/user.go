package httpapi

import (
	"net/http"
	"strconv"

	"github.com/verityhq/verity"
	"github.com/verityhq/verity/app"
)

type userJSON struct {
	ID          string `json:"id"`
	CTime       string `json:"ctime"`
	IDInService string `json:"id_in_service"`
}

func toUserJSON(u *verity.User) userJSON {
	return userJSON{ID: u.ID, CTime: verity.FormatTime(u.CreatedAt), IDInService: u.IDInService}
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		IDInService string `json:"id_in_service"`
		PhoneNumber string `json:"phone_number"`
	}
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	if req.IDInService == "" || req.PhoneNumber == "" {
		Error(w, r, verity.Errorf(verity.EINVALID, "id_in_service and phone_number are both required"))
		return
	}
	u, err := s.app.CreateUser(r.Context(), acct, r.PathValue("sid"), req.IDInService, req.PhoneNumber)
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

// createUsers registers many users in one transaction (a Verity extension):
// {"users": [{"id_in_service", "phone_number"}, …]}, all or none.
func (s *Server) createUsers(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		Users []struct {
			IDInService string `json:"id_in_service"`
			PhoneNumber string `json:"phone_number"`
		} `json:"users"`
	}
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	entries := make([]app.NewUser, len(req.Users))
	for i, u := range req.Users {
		entries[i] = app.NewUser{IDInService: u.IDInService, Phone: u.PhoneNumber}
	}
	users, err := s.app.CreateUsers(r.Context(), acct, r.PathValue("sid"), entries)
	if err != nil {
		Error(w, r, err)
		return
	}
	writeUsers(w, len(users), users)
}

// listUsers answers the Verigator listing. The optional ?limit= is
// Verity's: the response never holds more than app.MaxListUsers users,
// while "total" always counts them all.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			Error(w, r, verity.Errorf(verity.EINVALID, "limit must be a positive whole number"))
			return
		}
		limit = n
	}
	users, total, err := s.app.ListUsers(r.Context(), acct, r.PathValue("sid"), limit)
	if err != nil {
		Error(w, r, err)
		return
	}
	writeUsers(w, total, users)
}

func writeUsers(w http.ResponseWriter, total int, users []*verity.User) {
	out := struct {
		Total int        `json:"total"`
		Users []userJSON `json:"users"`
	}{Total: total, Users: make([]userJSON, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, toUserJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	u, err := s.app.User(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toUserJSON(u))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	if err := s.app.DeleteUser(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid")); err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct{}{})
}
