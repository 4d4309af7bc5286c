package app

import (
	"testing"
	"time"

	"github.com/verityhq/verity"
)

// TestPINHistoryOutlastsEveryWindow: the janitor's cutoff lies before the
// start of any send or failure window a service may configure. Were a
// window allowed to be longer, the janitor would delete history a send
// limit still counts, and, on SQLite, failure budgets still open: a locked
// out user would be let back in early.
func TestPINHistoryOutlastsEveryWindow(t *testing.T) {
	for _, w := range []struct {
		name string
		set  func(*verity.Settings, int)
	}{
		{"send_window_minutes", func(s *verity.Settings, m int) { s.SendWindowMinutes = m }},
		{"failure_window_minutes", func(s *verity.Settings, m int) { s.FailureWindowMinutes = m }},
	} {
		longest := 0
		for m := 1; m <= 100*24*60; m++ {
			s := verity.DefaultSettings()
			w.set(&s, m)
			if ValidateSettings(s) == nil {
				longest = m
			}
		}
		if longest == 0 {
			t.Fatalf("no %s is accepted", w.name)
		}
		if window := time.Duration(longest) * time.Minute; window >= pinHistoryKeep {
			t.Errorf("%s may be %v, not shorter than the janitor's %v", w.name, window, pinHistoryKeep)
		}
	}
}
