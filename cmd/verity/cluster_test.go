package main_test

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/verityhq/verity/sender/webhook"
	"github.com/verityhq/verity/totp"
)

// TestCluster runs Verity as it runs on PostgreSQL in production: three
// separate `verity serve` processes, each with its own connection pool, on
// one throwaway database, sharing one secret key file and one seed keyring,
// delivering SMS to a signed webhook that the test receives. Every request
// goes through the real binary's HTTP API, and requests that race are spread
// over the nodes so that only the database can decide them.
//
// The harness below lives in this file too (it is longer than the house's
// 600 lines for that reason): the cluster test reads, and skips, as one unit.
func TestCluster(t *testing.T) {
	base := os.Getenv("VERITY_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("VERITY_TEST_POSTGRES_URL not set: the three-node PostgreSQL cluster test is skipped")
	}
	c := startCluster(t, base)
	const A, B, C = 0, 1, 2

	t.Run("the Verigator client flow works with each request on another node", func(t *testing.T) {
		rr := 0 // round robin: every request below goes to the next node
		next := func() int { rr++; return rr % 3 }
		svc := c.call(t, next(), c.auth, "POST", svcPath, map[string]any{"name": "Flow", "fqdn": "flow.example"})
		c.want(t, svc, 200, "create service")
		sid := svc.str("id")
		c.want(t, c.call(t, next(), c.auth, "POST", svcPath, map[string]any{"name": "Flow", "fqdn": "x.example"}), 409, "duplicate service")

		phone := c.phone()
		user := c.call(t, next(), c.auth, "POST", svcPath+"/"+sid+"/users", map[string]any{"id_in_service": "alice@example.com", "phone_number": phone})
		c.want(t, user, 200, "register user")
		uid := user.str("id")
		dup := c.call(t, next(), c.auth, "POST", svcPath+"/"+sid+"/users", map[string]any{"id_in_service": "alice@example.com", "phone_number": c.phone()})
		c.want(t, dup, 409, "duplicate id_in_service")
		for _, bad := range []string{"5555555", "+372abc5555", "+99912345678", "+3725"} {
			r := c.call(t, next(), c.auth, "POST", svcPath+"/"+sid+"/users", map[string]any{"id_in_service": "bad " + bad, "phone_number": bad})
			c.want(t, r, 422, "register user with phone "+bad)
		}

		for node := range c.nodes {
			list := c.call(t, node, c.auth, "GET", svcPath+"/"+sid+"/users", nil)
			c.want(t, list, 200, "list users")
			if users, _ := list.body["users"].([]any); list.body["total"] != 1.0 || len(users) != 1 || users[0].(map[string]any)["id"] != uid {
				t.Fatalf("node %s lists %v, want exactly user %s", nodeName(node), list.body, uid)
			}
			for _, p := range []string{svcPath + "/" + sid + "/users/" + uid, svcPath + "/" + sid + "/user/" + uid, "/v1/service/" + sid + "/users/" + uid} {
				got := c.call(t, node, c.auth, "GET", p, nil)
				c.want(t, got, 200, "GET "+p)
				if got.str("id") != uid || got.str("id_in_service") != "alice@example.com" {
					t.Fatalf("node %s GET %s = %v", nodeName(node), p, got.body)
				}
			}
		}

		auth := svcPath + "/" + sid + "/users/" + uid + "/auth"
		started := c.call(t, next(), c.auth, "POST", auth, map[string]any{"method": "sms"})
		c.want(t, started, 200, "start sms")
		msg := c.gw.message(t, started.str("auth_id"))
		if msg.To != phone || msg.From != "Verity" || msg.ServiceID != sid {
			t.Fatalf("delivered %+v, want to %s from Verity for service %s", msg, phone, sid)
		}
		pin := msg.pin(t)
		checks := []struct {
			token, want string
		}{{wrongPIN(pin), "INVALID"}, {pin, "VERIFIED"}, {pin, "INVALID"}}
		for _, ck := range checks {
			r := c.call(t, next(), c.auth, "PUT", auth, map[string]any{"token": ck.token})
			c.want(t, r, 200, "check")
			if got := r.result(); got != ck.want || r.body["verified"] != (ck.want == "VERIFIED") {
				t.Fatalf("check on node %s = %v, want %s", nodeName(r.node), r.body, ck.want)
			}
		}

		// A user without an authenticator app asked for totp gets an SMS; the
		// PIN just verified lifts the resend interval.
		fallback := c.call(t, next(), c.auth, "POST", svcPath+"/"+sid+"/user/"+uid+"/auth", map[string]any{"method": "totp"})
		c.want(t, fallback, 200, "start totp without an app")
		if fallback.str("method") != "sms" || fallback.str("auth_id") == "" {
			t.Fatalf("totp start without an app = %v, want an sms fallback with an auth_id", fallback.body)
		}
		r := c.call(t, next(), c.auth, "PUT", auth, map[string]any{"token": c.gw.message(t, fallback.str("auth_id")).pin(t)})
		if r.status != 200 || r.body["verified"] != true || r.str("method") != "sms" {
			t.Fatalf("check of the fallback PIN = %d %v", r.status, r.body)
		}

		wrongAuth := strings.SplitN(c.auth, ":", 2)[0] + ":not-the-password"
		for _, a := range []string{wrongAuth, "", "nobody:" + strings.SplitN(c.auth, ":", 2)[1]} {
			c.want(t, c.call(t, next(), a, "GET", svcPath+"/"+sid, nil), 401, "wrong credentials")
		}
		c.want(t, c.call(t, next(), c.other, "GET", svcPath+"/"+sid, nil), 403, "another account's service")
		c.want(t, c.call(t, next(), c.other, "POST", auth, map[string]any{"method": "sms"}), 403, "start in another account's service")
		c.want(t, c.call(t, next(), c.auth, "DELETE", svcPath+"/"+sid, nil), 409, "delete a service with users")

		c.want(t, c.call(t, next(), c.auth, "DELETE", svcPath+"/"+sid+"/users/"+uid, nil), 202, "delete user")
		for node := range c.nodes {
			c.want(t, c.call(t, node, c.auth, "GET", svcPath+"/"+sid+"/users/"+uid, nil), 404, "GET deleted user")
			if list := c.call(t, node, c.auth, "GET", svcPath+"/"+sid+"/users", nil); list.body["total"] != 0.0 {
				t.Fatalf("node %s lists %v after the delete", nodeName(node), list.body)
			}
			c.want(t, c.call(t, node, c.auth, "PUT", auth, map[string]any{"token": pin}), 404, "check a deleted user")
		}
		deleted := c.call(t, A, c.auth, "DELETE", svcPath+"/"+sid, nil)
		c.want(t, deleted, 202, "delete service")
		// A node that still has the service in its 5 s cache must not be
		// able to create anything in it: the database refuses, and the node
		// says the service is gone rather than calling it a duplicate.
		for node := range c.nodes {
			r := c.call(t, node, c.auth, "POST", svcPath+"/"+sid+"/users", map[string]any{"id_in_service": "late", "phone_number": c.phone()})
			c.want(t, r, 404, "register a user in a service another node deleted")
		}
		// Each node's service cache may answer for up to cacheTTL (5 s)
		// after another node deleted the service; then it is gone everywhere.
		took := c.converge(t, 7*time.Second, func(node int) bool {
			r := c.call(t, node, c.auth, "GET", svcPath+"/"+sid, nil)
			if r.status != 200 && r.status != 404 {
				t.Fatalf("GET of a deleted service on node %s = %d %v", nodeName(node), r.status, r.body)
			}
			return r.status == 404
		})
		t.Logf("GET of the service deleted via A answers 404 on A, B, C after %v", took)
	})

	t.Run("of 100 parallel checks of the right PIN on three nodes exactly one verifies", func(t *testing.T) {
		sid := c.service(t, A, nil)
		uid := c.user(t, B, sid)
		auth := svcPath + "/" + sid + "/users/" + uid + "/auth"
		started := c.call(t, C, c.auth, "POST", auth, map[string]any{"method": "sms"})
		c.want(t, started, 200, "start")
		pin := c.gw.message(t, started.str("auth_id")).pin(t)

		replies := c.burst(t, 100, func(i int) (int, string, string, any) { return i % 3, "PUT", auth, map[string]any{"token": pin} })
		counts := resultCounts(t, replies)
		if counts["VERIFIED"] != 1 || counts["INVALID"] != 99 {
			t.Fatalf("100 parallel checks of one right PIN: %v, want exactly 1 VERIFIED and 99 INVALID", counts)
		}
	})

	t.Run("200 parallel wrong PINs on three nodes get exactly max_attempts tries, then the right PIN is refused", func(t *testing.T) {
		sid := c.service(t, B, nil)
		uid := c.user(t, C, sid)
		auth := svcPath + "/" + sid + "/users/" + uid + "/auth"
		started := c.call(t, A, c.auth, "POST", auth, map[string]any{"method": "sms"})
		c.want(t, started, 200, "start")
		pin := c.gw.message(t, started.str("auth_id")).pin(t)

		replies := c.burst(t, 200, func(i int) (int, string, string, any) {
			return i % 3, "PUT", auth, map[string]any{"token": wrongPIN(pin)}
		})
		counts := resultCounts(t, replies)
		if counts["INVALID"] != 5 || counts["THROTTLED"] != 195 {
			t.Fatalf("200 parallel wrong PINs: %v, want exactly 5 INVALID (max_attempts) and 195 THROTTLED", counts)
		}
		for node := range c.nodes {
			r := c.call(t, node, c.auth, "PUT", auth, map[string]any{"token": pin})
			if r.status != 200 || r.body["verified"] != false || r.result() != "THROTTLED" {
				t.Fatalf("right PIN after the tries ran out, node %s = %d %v, want THROTTLED", nodeName(node), r.status, r.body)
			}
		}
	})

	t.Run("the resend interval and the send limit hold across nodes", func(t *testing.T) {
		sid := c.service(t, C, nil)
		phone := c.phone()
		uid := c.userWithPhone(t, A, sid, phone)
		auth := svcPath + "/" + sid + "/users/" + uid + "/auth"
		replies := c.burst(t, 30, func(i int) (int, string, string, any) { return i % 3, "POST", auth, map[string]any{"method": "sms"} })
		ok, limited := 0, 0
		for _, r := range replies {
			switch r.status {
			case 200:
				ok++
			case 429:
				limited++
				ra, err := strconv.Atoi(r.header.Get("Retry-After"))
				// 31 is possible: a start reads the clock before it waits for
				// the winner's row lock, so the winner's PIN can be newer.
				if err != nil || ra < 1 || ra > 31 || r.body["retry_after"] != float64(ra) {
					t.Fatalf("429 from node %s: Retry-After %q, body %v; want the 30 s resend interval (±1 s) in both", nodeName(r.node), r.header.Get("Retry-After"), r.body)
				}
			default:
				t.Fatalf("start on node %s = %d %v", nodeName(r.node), r.status, r.body)
			}
		}
		if ok != 1 || limited != 29 || c.gw.sentTo(phone) != 1 {
			t.Fatalf("30 parallel starts: %d × 200, %d × 429, %d SMS delivered; want exactly 1, 29, 1", ok, limited, c.gw.sentTo(phone))
		}

		// max_sends 3, set through A before any other node has read the
		// service, so no node can act on a cached copy of the old policy.
		sid = c.service(t, A, map[string]any{"max_sends": 3})
		for node := range c.nodes {
			if s := c.call(t, node, c.auth, "GET", svcPath+"/"+sid+"/settings", nil); s.body["max_sends"] != 3.0 {
				t.Fatalf("node %s settings = %v, want max_sends 3", nodeName(node), s.body)
			}
		}
		phone = c.phone()
		uid = c.userWithPhone(t, B, sid, phone)
		auth = svcPath + "/" + sid + "/users/" + uid + "/auth"
		for i := range 3 {
			s := c.call(t, i%3, c.auth, "POST", auth, map[string]any{"method": "sms"})
			c.want(t, s, 200, fmt.Sprintf("start %d of 3", i+1))
			v := c.call(t, (i+1)%3, c.auth, "PUT", auth, map[string]any{"token": c.gw.message(t, s.str("auth_id")).pin(t)})
			if v.body["verified"] != true {
				t.Fatalf("check %d on node %s = %d %v", i+1, nodeName(v.node), v.status, v.body)
			}
		}
		for node := range c.nodes {
			r := c.call(t, node, c.auth, "POST", auth, map[string]any{"method": "sms"})
			ra, _ := strconv.Atoi(r.header.Get("Retry-After"))
			if r.status != 429 || ra <= 30 || !strings.Contains(r.str("message"), "too many codes") {
				t.Fatalf("4th start on node %s = %d %v (Retry-After %q), want 429 for the send limit, not the resend interval",
					nodeName(node), r.status, r.body, r.header.Get("Retry-After"))
			}
		}
		if n := c.gw.sentTo(phone); n != 3 {
			t.Fatalf("%d SMS delivered, want 3", n)
		}

		// Every node now has the service cached: a change through B reaches
		// A and C within the cache TTL of 5 s.
		c.want(t, c.call(t, B, c.auth, "PATCH", svcPath+"/"+sid+"/settings", map[string]any{"max_sends": 7}), 200, "PATCH settings")
		took := c.converge(t, 7*time.Second, func(node int) bool {
			return c.call(t, node, c.auth, "GET", svcPath+"/"+sid+"/settings", nil).body["max_sends"] == 7.0
		})
		t.Logf("the settings change made via B applies on A, B, C after %v", took)
	})

	t.Run("an authenticator app enrolled on one node verifies on another, each code once", func(t *testing.T) {
		// A window of 2 steps keeps codes computed a moment earlier valid
		// if a 30 s step boundary passes while they travel.
		sid := c.service(t, A, map[string]any{"totp_window": 2})
		phone := c.phone()
		uid := c.userWithPhone(t, B, sid, phone)
		user := svcPath + "/" + sid + "/users/" + uid
		enrol := c.call(t, C, c.auth, "POST", user+"/totp", nil)
		c.want(t, enrol, 200, "enrol")
		seed, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(enrol.str("secret"))
		if err != nil || enrol.str("status") != "pending" {
			t.Fatalf("enrolment = %v (%v)", enrol.body, err)
		}
		params := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: 30}
		code := func(offset int64) string { return totp.Code(seed, totp.Step(time.Now(), 30)+offset, params) }

		confirmed := c.call(t, A, c.auth, "PUT", user+"/totp", map[string]any{"token": code(-1)})
		c.want(t, confirmed, 200, "confirm on another node")
		recovery, _ := confirmed.body["recovery_codes"].([]any)
		if confirmed.str("status") != "active" || len(recovery) != 10 {
			t.Fatalf("confirm = %v", confirmed.body)
		}
		if info := c.call(t, B, c.auth, "GET", user+"/totp", nil); info.str("status") != "active" || info.body["recovery_codes_left"] != 10.0 {
			t.Fatalf("GET totp on B = %v", info.body)
		}
		started := c.call(t, C, c.auth, "POST", user+"/auth", map[string]any{"method": "totp"})
		if started.status != 200 || started.str("method") != "totp" || started.body["auth_id"] != nil || c.gw.sentTo(phone) != 0 {
			t.Fatalf("totp start = %d %v with %d SMS, want method totp, auth_id null, nothing sent", started.status, started.body, c.gw.sentTo(phone))
		}
		now := code(0)
		for i, want := range []bool{true, false} { // then a replay of the same code
			r := c.call(t, B+i, c.auth, "PUT", user+"/auth", map[string]any{"token": now})
			if r.status != 200 || r.body["verified"] != want || r.str("method") != "totp" {
				t.Fatalf("totp check %d on node %s = %d %v, want verified %v", i+1, nodeName(r.node), r.status, r.body, want)
			}
		}

		ahead := code(1)
		replies := c.burst(t, 60, func(i int) (int, string, string, any) {
			return i % 3, "PUT", user + "/auth", map[string]any{"token": ahead, "method": "totp"}
		})
		if counts := resultCounts(t, replies); counts["VERIFIED"] != 1 || counts["INVALID"] != 59 {
			t.Fatalf("60 parallel submissions of one valid code: %v, want exactly 1 VERIFIED and 59 INVALID", counts)
		}

		rc := recovery[0].(string)
		for i, want := range []bool{true, false} {
			r := c.call(t, i, c.auth, "PUT", user+"/auth", map[string]any{"token": rc, "method": "recovery"})
			if r.status != 200 || r.body["verified"] != want {
				t.Fatalf("recovery code use %d on node %s = %d %v, want verified %v", i+1, nodeName(i), r.status, r.body, want)
			}
		}
	})

	t.Run("a node killed mid-load loses nothing another node acknowledged", func(t *testing.T) {
		sid := c.service(t, A, nil)
		const ops, workers, killAfter = 300, 12, 100
		type outcome struct {
			user, authID          string
			userNode, startNode   int
			userErr, startErr     error
			userStatus, startCode int
		}
		results := make([]outcome, ops)
		var done atomic.Int64
		killNow, killed := make(chan struct{}), make(chan time.Time, 1)
		go func() { <-killNow; c.nodes[C].Kill(); killed <- time.Now() }()
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					o := &results[i]
					o.userNode, o.startNode = i%3, (i+1)%3
					r, err := c.send(o.userNode, c.auth, "POST", svcPath+"/"+sid+"/users",
						map[string]any{"id_in_service": fmt.Sprintf("load-%03d", i), "phone_number": c.phone()})
					o.userStatus, o.userErr = r.status, err
					if err == nil && r.status == 200 {
						o.user = r.str("id")
						r, err = c.send(o.startNode, c.auth, "POST", svcPath+"/"+sid+"/users/"+o.user+"/auth", map[string]any{"method": "sms"})
						o.startCode, o.startErr = r.status, err
						if err == nil && r.status == 200 {
							o.authID = r.str("auth_id")
						}
					}
					if done.Add(1) == killAfter {
						close(killNow)
					}
				}
			}()
		}
		began := time.Now()
		deadline := time.After(60 * time.Second)
	feed:
		for i := range ops {
			select {
			case jobs <- i:
			case <-deadline:
				break feed
			}
		}
		close(jobs)
		wg.Wait()
		if done.Load() < killAfter {
			close(killNow) // the workers never got there; the check below says so
		}
		killedAt := <-killed
		elapsed := time.Since(began)

		acked := map[string]bool{}
		var starts []outcome
		var transport, ackedByC int
		for i, o := range results {
			for _, step := range []struct {
				node   int
				status int
				err    error
			}{{o.userNode, o.userStatus, o.userErr}, {o.startNode, o.startCode, o.startErr}} {
				switch {
				case step.err != nil && step.node == C && !errors.Is(step.err, errNotJSON):
					transport++ // C is dead or dying
				case step.err != nil:
					t.Fatalf("op %d on node %s: %v", i, nodeName(step.node), step.err)
				case step.status != 200 && step.status != 0:
					t.Fatalf("op %d on node %s answered %d", i, nodeName(step.node), step.status)
				}
			}
			if o.user != "" {
				acked[o.user] = true
				if o.userNode == C {
					ackedByC++
				}
			}
			if o.authID != "" {
				starts = append(starts, o)
				if o.startNode == C {
					ackedByC++
				}
			}
		}
		t.Logf("%d ops in %s, node C killed %s in (after op %d); %d requests to C failed in transport, C acknowledged %d before; %d users and %d starts acknowledged",
			done.Load(), elapsed.Round(time.Millisecond), killedAt.Sub(began).Round(time.Millisecond), killAfter, transport, ackedByC, len(acked), len(starts))
		if done.Load() != ops || transport == 0 || ackedByC == 0 {
			t.Fatalf("%d of %d ops ran, %d transport failures, %d acknowledged by C: the kill did not land mid-load", done.Load(), ops, transport, ackedByC)
		}

		list := c.call(t, A, c.auth, "GET", svcPath+"/"+sid+"/users", nil)
		users, _ := list.body["users"].([]any)
		listed := map[string]bool{}
		for _, u := range users {
			listed[u.(map[string]any)["id"].(string)] = true
		}
		for id := range acked {
			if !listed[id] {
				t.Errorf("user %s was acknowledged but node A does not list it", id)
			}
		}
		if total := int(list.body["total"].(float64)); total < len(acked) || total > ops {
			t.Fatalf("node A counts %d users, want between %d acknowledged and %d attempted", total, len(acked), ops)
		}
		// Every acknowledged user is found, and every acknowledged start's
		// PIN verifies, through the nodes that survived.
		replies := c.burst(t, len(starts), func(i int) (int, string, string, any) {
			o := starts[i]
			return i % 2, "PUT", svcPath + "/" + sid + "/users/" + o.user + "/auth", map[string]any{"token": c.gw.pin(o.authID)}
		})
		if counts := resultCounts(t, replies); counts["VERIFIED"] != len(starts) {
			t.Fatalf("PINs of %d acknowledged starts: %v, want all VERIFIED", len(starts), counts)
		}
		var ids []string
		for id := range acked {
			ids = append(ids, id)
		}
		replies = c.burst(t, len(ids), func(i int) (int, string, string, any) {
			return B - i%2, "GET", svcPath + "/" + sid + "/users/" + ids[i], nil
		})
		for _, r := range replies {
			c.want(t, r, 200, "GET an acknowledged user")
		}
	})

	t.Run("every SMS was signed and no log line holds a phone number", func(t *testing.T) {
		if n := c.gw.badSignatures.Load(); n != 0 {
			t.Fatalf("the gateway refused %d deliveries with a bad signature", n)
		}
		for node, s := range c.nodes {
			logs := s.Stderr()
			for _, p := range c.gw.phones() {
				if strings.Contains(logs, p) {
					t.Fatalf("node %s logged the full phone number %s", nodeName(node), p)
				}
			}
		}
	})
}

const svcPath = "/v1/service/service"

// cluster is three `verity serve` processes on one database.
type cluster struct {
	nodes  []*server
	auth   string // X-Service-Auth of the test's account
	other  string // another account's credentials
	gw     *smsGateway
	client *http.Client
	phoneN atomic.Int64
	nameN  atomic.Int64
}

// startCluster creates a database, migrates it from three processes at
// once, creates two accounts and starts three nodes on it.
func startCluster(t *testing.T, base string) *cluster {
	t.Helper()
	dbURL := createClusterDatabase(t, base)
	dir := t.TempDir()

	// Every node needs identical copies of the secret key (64 hex chars)
	// and of the seed keyring; here they share the files.
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	keyFile, seedFile := filepath.Join(keys, "secret.key"), filepath.Join(keys, "seed-keys.json")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	gate := make(chan struct{})
	errs := make([]string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			if _, stderr, err := runBounded(dir, "migrate", "--db", dbURL); err != nil || !strings.Contains(stderr, "up to date") {
				errs[i] = fmt.Sprintf("migrate %d: %v\n%s", i+1, err, stderr)
			}
		}()
	}
	close(gate)
	wg.Wait()
	if all := strings.Join(errs, ""); all != "" {
		t.Fatalf("three concurrent migrates: %s", all)
	}
	checkMigratedOnce(t, dbURL)

	// The first command that uses the default keyring path generates the
	// keyring; everything after it names the file explicitly.
	c := &cluster{gw: newSMSGateway(t)}
	c.auth = clusterAccount(t, dir, "cluster", "--db", dbURL, "--data-dir", keys, "--secret-key-file", keyFile)
	if _, err := os.Stat(seedFile); err != nil {
		t.Fatalf("the seed keyring was not generated: %v", err)
	}
	dbArgs := []string{"--db", dbURL, "--secret-key-file", keyFile, "--seed-keys-file", seedFile}
	c.other = clusterAccount(t, dir, "other", dbArgs...)
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 128, IdleConnTimeout: 30 * time.Second}}
	t.Cleanup(c.client.CloseIdleConnections)
	for range 3 {
		c.nodes = append(c.nodes, startServer(t, dir, append(dbArgs,
			"--sms-webhook", c.gw.srv.URL+"/sms", "--sms-webhook-secret", string(c.gw.secret))...))
	}
	return c
}

// runBounded is runVerity with a time limit, so that a command that hangs
// fails the test instead of outliving it.
func runBounded(dir string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, verityBin, args...)
	cmd.Dir, cmd.Env = dir, cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("verity %s: no exit within a minute", args[0])
	}
	return stdout.String(), stderr.String(), err
}

// clusterAccount is createAccount through runBounded.
func clusterAccount(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runBounded(dir, append([]string{"account", "create", name}, args...)...)
	var creds map[string]string
	if err != nil || json.Unmarshal([]byte(stdout), &creds) != nil || creds["password"] == "" {
		t.Fatalf("account create %s: %v\n%s%s", name, err, stdout, stderr)
	}
	return creds["username"] + ":" + creds["password"]
}

// createClusterDatabase creates an empty database, dropped at cleanup
// (after the nodes, whose cleanups run first), and returns its URL.
func createClusterDatabase(t *testing.T, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 6)
	rand.Read(b)
	name := "verity_cluster_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to VERITY_TEST_POSTGRES_URL: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil { // a generated name: nothing to quote
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("VERITY_TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// checkMigratedOnce fails unless every migration was applied exactly once.
func checkMigratedOnce(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, versions, latest int64
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT version_id), max(version_id) FROM goose_db_version WHERE version_id > 0`).
		Scan(&rows, &versions, &latest)
	if err != nil || rows != versions || latest < 1 {
		t.Fatalf("goose_db_version after three concurrent migrates: %d rows, %d versions, latest %d (%v); want each version once", rows, versions, latest, err)
	}
}

// reply is one answer of a node.
type reply struct {
	node   int
	status int
	body   map[string]any
	header http.Header
}

func (r reply) str(key string) string { s, _ := r.body[key].(string); return s }

// result is the "result" of a check's status object.
func (r reply) result() string {
	st, _ := r.body["status"].(map[string]any)
	s, _ := st["result"].(string)
	return s
}

// errNotJSON marks an answer that arrived but is not a JSON object: a
// defect, unlike a transport error from a dead node.
var errNotJSON = errors.New("body is not a JSON object")

// send is one JSON request to a node; errors are transport errors or errNotJSON.
func (c *cluster) send(node int, auth, method, path string, body any) (reply, error) {
	r := reply{node: node}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.nodes[node].URL+path, rd)
	if err != nil {
		return r, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("X-Service-Auth", auth)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	r.status, r.header = resp.StatusCode, resp.Header
	if err := json.Unmarshal(raw, &r.body); err != nil || r.body == nil {
		return r, fmt.Errorf("%w: status %d, %q", errNotJSON, resp.StatusCode, raw)
	}
	return r, nil
}

// call is send that fails the test on any error.
func (c *cluster) call(t testing.TB, node int, auth, method, path string, body any) reply {
	t.Helper()
	r, err := c.send(node, auth, method, path, body)
	if err != nil {
		t.Fatalf("%s %s on node %s: %v", method, path, nodeName(node), err)
	}
	return r
}

func (c *cluster) want(t testing.TB, r reply, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s on node %s = %d %v, want %d", what, nodeName(r.node), r.status, r.body, status)
	}
	if _, ok := r.body["message"].(string); status >= 400 && !ok {
		t.Fatalf("%s on node %s: error body %v has no message", what, nodeName(r.node), r.body)
	}
}

// burst sends n requests at once, released together; req(i) names the
// node and the request. It fails the test on any transport error.
func (c *cluster) burst(t testing.TB, n int, req func(i int) (node int, method, path string, body any)) []reply {
	t.Helper()
	replies, errs := make([]reply, n), make([]error, n)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		node, method, path, body := req(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			replies[i], errs[i] = c.send(node, c.auth, method, path, body)
		}()
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("burst of %d requests: %v", n, err)
	}
	return replies
}

// converge asks every node ok() every 100 ms until each has said yes, and
// returns how long each took. It fails the test if one has not after limit.
func (c *cluster) converge(t testing.TB, limit time.Duration, ok func(node int) bool) []time.Duration {
	t.Helper()
	start := time.Now()
	took := make([]time.Duration, len(c.nodes))
	for pending := len(c.nodes); pending > 0; time.Sleep(100 * time.Millisecond) {
		for node := range c.nodes {
			if took[node] == 0 && ok(node) {
				took[node] = max(time.Since(start).Round(100*time.Millisecond), time.Millisecond)
				pending--
			}
		}
		if pending > 0 && time.Since(start) > limit {
			t.Fatalf("after %v the nodes still disagree (time to agree per node, 0 for not yet: %v)", limit, took)
		}
	}
	return took
}

// service creates a service through node and, before any other node can
// have read it, applies settings.
func (c *cluster) service(t testing.TB, node int, settings map[string]any) string {
	t.Helper()
	r := c.call(t, node, c.auth, "POST", svcPath, map[string]any{"name": fmt.Sprintf("Cluster %d", c.nameN.Add(1)), "fqdn": "cluster.example"})
	c.want(t, r, 200, "create service")
	if settings != nil {
		c.want(t, c.call(t, node, c.auth, "PATCH", svcPath+"/"+r.str("id")+"/settings", settings), 200, "PATCH settings")
	}
	return r.str("id")
}

func (c *cluster) user(t testing.TB, node int, sid string) string {
	t.Helper()
	return c.userWithPhone(t, node, sid, c.phone())
}

func (c *cluster) userWithPhone(t testing.TB, node int, sid, phone string) string {
	t.Helper()
	r := c.call(t, node, c.auth, "POST", svcPath+"/"+sid+"/users", map[string]any{"id_in_service": "user-" + phone, "phone_number": phone})
	c.want(t, r, 200, "register user")
	return r.str("id")
}

// phone returns a new valid Estonian mobile number, so that the gateway can
// count each user's messages.
func (c *cluster) phone() string { return fmt.Sprintf("+3725%07d", c.phoneN.Add(1)) }

// resultCounts counts the results of checks, failing unless all answered 200.
func resultCounts(t testing.TB, replies []reply) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, r := range replies {
		if r.status != 200 {
			t.Fatalf("check on node %s = %d %v, want 200", nodeName(r.node), r.status, r.body)
		}
		if (r.result() == "VERIFIED") != (r.body["verified"] == true) {
			t.Fatalf("check on node %s = %v: verified disagrees with result", nodeName(r.node), r.body)
		}
		counts[r.result()]++
	}
	return counts
}

// wrongPIN is a PIN of the same length that is not pin.
func wrongPIN(pin string) string {
	b := []byte(pin)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func nodeName(i int) string { return string(rune('A' + i)) }

// smsGateway is the SMS provider side of the webhook: it checks each
// delivery's signature and keeps the messages.
type smsGateway struct {
	srv           *httptest.Server
	secret        []byte
	badSignatures atomic.Int64

	mu   sync.Mutex
	byID map[string]smsMessage
	byTo map[string]int
}

type smsMessage struct {
	ID, To, From, Text string
	ServiceID          string `json:"service_id"`
}

func newSMSGateway(t *testing.T) *smsGateway {
	g := &smsGateway{secret: []byte("cluster-webhook-secret-" + strconv.Itoa(os.Getpid())), byID: map[string]smsMessage{}, byTo: map[string]int{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err == nil {
			err = webhook.Verify(g.secret, r.Header.Get(webhook.TimestampHeader), r.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute)
		}
		var m smsMessage
		if err == nil && r.URL.Path == "/sms" {
			err = json.Unmarshal(body, &m)
		}
		if err != nil || m.ID == "" {
			g.badSignatures.Add(1)
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		g.mu.Lock()
		g.byID[m.ID] = m
		g.byTo[m.To]++
		g.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// message returns the delivered message whose id is a start's auth_id.
// A start answers 200 only after the gateway accepted it, so it is here.
func (g *smsGateway) message(t testing.TB, authID string) smsMessage {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.byID[authID]
	if !ok {
		t.Fatalf("no SMS delivered for auth_id %q", authID)
	}
	return m
}

var pinText = regexp.MustCompile(`code is (\d+)$`)

func (m smsMessage) pin(t testing.TB) string {
	t.Helper()
	p := pinText.FindStringSubmatch(m.Text)
	if p == nil {
		t.Fatalf("no PIN in %q", m.Text)
	}
	return p[1]
}

// pin is message(…).pin for goroutines: "" when there is none.
func (g *smsGateway) pin(authID string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := pinText.FindStringSubmatch(g.byID[authID].Text); p != nil {
		return p[1]
	}
	return ""
}

func (g *smsGateway) sentTo(phone string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byTo[phone]
}

func (g *smsGateway) phones() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for p := range g.byTo {
		out = append(out, p)
	}
	return out
}
