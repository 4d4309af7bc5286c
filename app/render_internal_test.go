package app

import "testing"

func TestRenderMessage(t *testing.T) {
	for _, tc := range []struct{ template, service, pin, want string }{
		{"{service}: your code is <PIN>", "Acme", "1234", "Acme: your code is 1234"},
		{"<PIN> is your {service} code. {service} will never ask for it.", "Acme", "0042",
			"0042 is your Acme code. Acme will never ask for it."},
		// A service name holding the placeholder cannot capture the code's place.
		{"{service}: <PIN>", "A<PIN>B", "777", "A<PIN>B: 777"},
		{"no name: <PIN>", "Acme", "1", "no name: 1"},
	} {
		if got := renderMessage(tc.template, tc.service, tc.pin); got != tc.want {
			t.Errorf("renderMessage(%q, %q, %q) = %q, want %q", tc.template, tc.service, tc.pin, got, tc.want)
		}
	}
}
