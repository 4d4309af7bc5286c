package httpapi

import (
	"encoding/base64"
	"net/http"

	"github.com/verityhq/verity"
)

// Authenticator-app enrolment, Verity's extension of the v1 API.

func (s *Server) enrolTOTP(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	e, err := s.app.EnrolTOTP(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the body holds the seed
	writeJSON(w, http.StatusOK, struct {
		Secret     string `json:"secret"`
		OTPAuthURI string `json:"otpauth_uri"`
		QRPNG      string `json:"qr_png"`
		Status     string `json:"status"`
	}{e.Secret, e.URI, base64.StdEncoding.EncodeToString(e.QRPNG), e.Status})
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		Error(w, r, err)
		return
	}
	codes, err := s.app.ConfirmTOTP(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"), req.Token)
	if err != nil {
		Error(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the body holds the recovery codes
	writeJSON(w, http.StatusOK, struct {
		Status        string   `json:"status"`
		RecoveryCodes []string `json:"recovery_codes"`
	}{verity.FactorActive, codes})
}

func (s *Server) getTOTP(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	info, err := s.app.TOTPInfo(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	f := info.Factor
	out := struct {
		Status            string  `json:"status"`
		Algorithm         string  `json:"algorithm"`
		Digits            int     `json:"digits"`
		Period            int     `json:"period"`
		CTime             string  `json:"ctime"`
		ActivatedAt       *string `json:"activated_at"`
		RecoveryCodesLeft int     `json:"recovery_codes_left"`
	}{Status: f.Status, Algorithm: f.Algorithm, Digits: f.Digits, Period: f.Period,
		CTime: verity.FormatTime(f.CreatedAt), RecoveryCodesLeft: info.RecoveryCodesLeft}
	if !f.ActivatedAt.IsZero() {
		t := verity.FormatTime(f.ActivatedAt)
		out.ActivatedAt = &t
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteTOTP(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	if err := s.app.DeleteTOTP(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid")); err != nil {
		Error(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct{}{})
}

func (s *Server) totpQR(w http.ResponseWriter, r *http.Request, acct *verity.Account) {
	png, err := s.app.PendingTOTPQR(r.Context(), acct, r.PathValue("sid"), r.PathValue("uid"))
	if err != nil {
		Error(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(png)
}
