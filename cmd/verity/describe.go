package main

import (
	"cmp"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// redactor keeps secrets the command line or the environment gave the
// process out of what it prints. pgx's errors name the user, database, host
// and port of a PostgreSQL URL but not its password; its parse errors redact
// the password only as best they can, and a URL whose password holds an
// unescaped '/', '?', '#' or '@' is parsed with pieces of the password as the
// host, port or database name, which then appear in every error.
type redactor struct {
	secrets []string
	// withhold is set when a postgres:// URL has an '@' after its host part:
	// its password may show in pieces that no replacement can find.
	withhold bool
}

// newRedactor collects the passwords of every postgres:// URL and libpq
// keyword/value string in args and env (values, or KEY=value pairs),
// PGPASSWORD, and the webhook's secret.
func newRedactor(args, env []string) *redactor {
	r := &redactor{}
	for i, a := range args {
		r.addURLs(a)
		r.addKeywordPasswords(a)
		if v, ok := strings.CutPrefix(a, "--sms-webhook-secret="); ok {
			r.add(v)
		} else if a == "--sms-webhook-secret" && i+1 < len(args) {
			r.add(args[i+1])
		}
	}
	for _, kv := range env {
		key, v, _ := strings.Cut(kv, "=")
		r.addURLs(v)
		r.addKeywordPasswords(v)
		if key == "PGPASSWORD" || key == "VERITY_SMS_WEBHOOK_SECRET" {
			r.add(v)
		}
	}
	// Longest first: a secret that begins another would otherwise be
	// replaced first and leave the longer one's tail in sight.
	slices.SortFunc(r.secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return r
}

// keywordPassword finds a password (or the client key's sslpassword) in a
// libpq keyword/value string ("host=… password=…"), where spaces may surround the '=' and a value may
// be single-quoted with backslash escapes. pgx masks such a password in its
// parse errors only when it is written "password=value".
var keywordPassword = regexp.MustCompile(`(?i)\b(?:ssl)?password\s*=\s*('(?:\\.|[^'\\])*'?|\S+)`)

// addKeywordPasswords records the passwords of the keyword/value strings s
// holds, as written and unquoted. A quoted one may hold spaces, and a parse
// error can then show any piece of it: the cause is withheld.
func (r *redactor) addKeywordPasswords(s string) {
	for _, m := range keywordPassword.FindAllStringSubmatch(s, -1) {
		v := m[1]
		r.add(v)
		if unquoted, ok := strings.CutPrefix(v, "'"); ok {
			r.withhold = true
			unquoted = strings.TrimSuffix(unquoted, "'")
			r.add(unquoted)
			r.add(strings.NewReplacer(`\'`, "'", `\\`, `\`).Replace(unquoted))
		}
	}
}

func (r *redactor) add(secret string) {
	if secret != "" {
		r.secrets = append(r.secrets, secret)
	}
}

// addURLs records the passwords of the postgres:// URLs s holds (a flag's
// value may follow its name and an '=').
func (r *redactor) addURLs(s string) {
	lower := strings.ToLower(s) // storeopen takes the scheme in any case; the lengths match
	for _, scheme := range []string{"postgres://", "postgresql://"} {
		i := strings.Index(lower, scheme)
		if i < 0 {
			continue
		}
		raw := s[i:]
		rest := raw[len(scheme):]
		// What a person means by the password: from the first ':' of the
		// part before the last '@' to that '@', whatever it holds.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			userinfo := rest[:at]
			if _, pw, ok := strings.Cut(userinfo, ":"); ok {
				r.add(pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					r.add(dec)
				}
			}
			if strings.ContainsAny(userinfo, "/?#") {
				r.withhold = true
			}
		}
		if u, err := url.Parse(raw); err == nil {
			if pw, ok := u.User.Password(); ok {
				r.add(pw)
			}
			for _, key := range []string{"password", "sslpassword"} {
				for _, pw := range u.Query()[key] {
					r.add(pw)
					r.add(url.QueryEscape(pw))
				}
			}
		}
	}
}

// redact replaces every secret in s.
func (r *redactor) redact(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}

// withheld replaces a cause that may hold pieces of a password.
const withheld = " (cause not shown: it may hold pieces of a password: a postgres:// URL has an '@' after its host part," +
	" or a keyword/value string has a quoted password; percent-encode '@', '/', '?' and '#' in a URL's user name and password," +
	" e.g. '/' as %2F, or give the password in PGPASSWORD)"
