package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/wsdproject/wsd/auth"
)

// testKeys are the keys of the auth tests: an HMAC secret, an ECDSA pair,
// and another secret that wsd does not know.
type testKeys struct {
	secret, other            []byte
	esPrivate, esPublic      []byte
	secretFile, esPublicFile string
	esPrivateFile, otherFile string
	hs, hsOther, es          auth.Config
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	dir := t.TempDir()
	k := &testKeys{secret: []byte(strings.Repeat("s", 32)), other: []byte(strings.Repeat("o", 32))}
	var err error
	if k.esPrivate, k.esPublic, err = auth.GenerateKey(auth.AlgES); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k.secretFile, k.otherFile = write("secret", k.secret), write("other", k.other)
	k.esPublicFile, k.esPrivateFile = write("es.pub", k.esPublic), write("es.key", k.esPrivate)
	k.hs = auth.Config{Alg: auth.AlgHS, Key: k.secret}
	k.hsOther = auth.Config{Alg: auth.AlgHS, Key: k.other}
	k.es = auth.Config{Alg: auth.AlgES, Key: k.esPrivate}
	return k
}

// mint signs claims for alice (those of c modified by edit) with cfg.
func mint(t *testing.T, cfg auth.Config, edit func(c *auth.Claims)) string {
	t.Helper()
	c := auth.Claims{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), Topics: []string{"news.*", "team.{sub}.*"}, Publish: []string{"chat.{sub}"},
		Info: json.RawMessage(`{"name":"Alice"}`)}
	if edit != nil {
		edit(&c)
	}
	tok, err := auth.Mint(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken is a JWT built by hand: a header and claims, base64url, and sig.
func rawToken(header, claims string, sig []byte) string {
	e := base64.RawURLEncoding
	return e.EncodeToString([]byte(header)) + "." + e.EncodeToString([]byte(claims)) + "." + e.EncodeToString(sig)
}

// hmacWithKey signs a token with HS256 under key, by hand: the "HMAC
// with the public key as the secret" confusion that Mint refuses to make.
func hmacWithKey(key []byte) string {
	exp := time.Now().Add(time.Hour).Unix()
	unsigned := rawToken(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"alice","exp":`+itoa(exp)+`}`, nil)
	unsigned = strings.TrimSuffix(unsigned, ".")
	m := hmac.New(sha256.New, key)
	m.Write([]byte(unsigned))
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// upgradeAnswer dials path with header and returns the HTTP status and
// body of the answer (101 and "" for an upgrade, then closed).
func (td *testDaemon) upgradeAnswer(t *testing.T, path string, header http.Header) (int, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: adminTimeout}
	c, resp, err := d.Dial("ws://"+td.addr+path, header)
	if err == nil {
		c.Close()
		return resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// sendJSON writes v as a text message.
func sendJSON(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatal(err)
	}
}

// readMap reads the next text message as a JSON object.
func readMap(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	return m
}

// expectCloseCode reads until the connection closes and checks its code
// and that the reason contains reason.
func expectCloseCode(t *testing.T, c *websocket.Conn, code int, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(adminTimeout))
	for {
		_, p, err := c.ReadMessage()
		if err == nil {
			t.Logf("before the close: %s", p)
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok || ce.Code != code || !strings.Contains(ce.Text, reason) {
			t.Fatalf("got %v, want close %d %q", err, code, reason)
		}
		return
	}
}

// tokenCase is a token and what a client sees for it: the HTTP status and
// body reason on the upgrade, the close code and reason of an auth message.
type tokenCase struct {
	name   string
	token  func(k *testKeys) string
	status int
	reason string
}

func tokenCases(t *testing.T) []tokenCase {
	return []tokenCase{
		{"valid", func(k *testKeys) string { return mint(t, k.hs, nil) }, 101, ""},
		{"expired", func(k *testKeys) string {
			return mint(t, k.hs, func(c *auth.Claims) { c.ExpiresAt = time.Now().Add(-2 * time.Minute) })
		}, 401, "token expired"},
		{"not yet valid", func(k *testKeys) string {
			return mint(t, k.hs, func(c *auth.Claims) { c.NotBefore = time.Now().Add(2 * time.Minute) })
		}, 401, "token not yet valid"},
		{"wrong issuer", func(k *testKeys) string { return mint(t, k.hs, func(c *auth.Claims) { c.Issuer = "someone-else" }) }, 401, "wrong issuer"},
		{"wrong audience", func(k *testKeys) string {
			return mint(t, k.hs, func(c *auth.Claims) { c.Issuer, c.Audience = "wsd-test", []string{"other-app"} })
		}, 401, "wrong audience"},
		{"wrong key", func(k *testKeys) string {
			return mint(t, k.hsOther, func(c *auth.Claims) { c.Issuer, c.Audience = "wsd-test", []string{"wsd"} })
		}, 401, "bad signature"},
		{"alg none", func(k *testKeys) string {
			exp := time.Now().Add(time.Hour).Unix()
			return rawToken(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice","exp":`+itoa(exp)+`,"iss":"wsd-test","aud":"wsd"}`, nil)
		}, 401, "algorithm not allowed"},
		{"ES256 to an HMAC server", func(k *testKeys) string {
			return mint(t, k.es, func(c *auth.Claims) { c.Issuer, c.Audience = "wsd-test", []string{"wsd"} })
		}, 401, "algorithm not allowed"},
		{"malformed", func(*testKeys) string { return "not.a.jwt" }, 401, "malformed token"},
		{"oversized", func(*testKeys) string { return strings.Repeat("a", 5000) }, 401, "token too long"},
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// hsDaemon runs push mode with -auth required and HMAC tokens of issuer
// wsd-test and audience wsd.
func hsDaemon(t *testing.T, k *testKeys, args ...string) *testDaemon {
	base := []string{"-mode", "push", "-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS",
		"-auth-jwt-issuer", "wsd-test", "-auth-jwt-audience", "wsd"}
	return startWSD(t, append(base, args...)...)
}

// withIssuer makes a valid-case mint carry the daemon's issuer and audience.
func withIssuer(k *testKeys, tc tokenCase, t *testing.T) string {
	if tc.name == "valid" {
		return mint(t, k.hs, func(c *auth.Claims) { c.Issuer, c.Audience = "wsd-test", []string{"wsd"} })
	}
	if tc.name == "expired" || tc.name == "not yet valid" {
		// issuer and audience right, so that the time is what is wrong
		return mint(t, k.hs, func(c *auth.Claims) {
			c.Issuer, c.Audience = "wsd-test", []string{"wsd"}
			if tc.name == "expired" {
				c.ExpiresAt = time.Now().Add(-2 * time.Minute)
			} else {
				c.NotBefore = time.Now().Add(2 * time.Minute)
			}
		})
	}
	return tc.token(k)
}

// TestAuthTokensOnUpgrade: every token case as a header and as ?token=:
// 101, or 401 with the reason (never the token) before the upgrade.
func TestAuthTokensOnUpgrade(t *testing.T) {
	k := newTestKeys(t)
	td := hsDaemon(t, k)
	for _, tc := range tokenCases(t) {
		tok := withIssuer(k, tc, t)
		t.Run(tc.name+"/header", func(t *testing.T) {
			status, body := td.upgradeAnswer(t, "/", bearer(tok))
			if status != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("got %d %q, want %d %q", status, body, tc.status, tc.reason)
			}
			if len(tok) > 16 && strings.Contains(body, tok[:16]) {
				t.Fatalf("the answer repeats the token: %q", body)
			}
		})
		t.Run(tc.name+"/query", func(t *testing.T) {
			status, body := td.upgradeAnswer(t, "/?token="+tok, nil)
			if status != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("got %d %q, want %d %q", status, body, tc.status, tc.reason)
			}
		})
	}
}

// TestAuthTokensInMessage: every token case in {"op":"auth"}: the answer
// {"op":"authenticated"} or close 4001 with the reason; anything else
// first closes 4000, and silence 4002 at -auth-timeout.
func TestAuthTokensInMessage(t *testing.T) {
	k := newTestKeys(t)
	td := hsDaemon(t, k, "-auth-timeout", "1s")
	for _, tc := range tokenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			c := td.dialHeader(t, "/", nil)
			sendJSON(t, c, map[string]string{"op": "auth", "token": withIssuer(k, tc, t)})
			if tc.status == 101 {
				m := readMap(t, c)
				if m["op"] != "authenticated" || m["user"] != "alice" || m["id"] == "" {
					t.Fatalf("got %v", m)
				}
				sendJSON(t, c, map[string]string{"op": "subscribe", "topic": "news.a"})
				if m := readMap(t, c); m["op"] != "subscribed" {
					t.Fatalf("after auth: %v", m)
				}
				return
			}
			expectCloseCode(t, c, int(closeAuthFailed), tc.reason)
		})
	}
	t.Run("token far past the limit", func(t *testing.T) {
		// refused by the check with its reason, however long the message
		c := td.dialHeader(t, "/", nil)
		sendJSON(t, c, map[string]string{"op": "auth", "token": strings.Repeat("a", 20000)})
		expectCloseCode(t, c, int(closeAuthFailed), "token too long")
	})
	t.Run("subscribe first", func(t *testing.T) {
		c := td.dialHeader(t, "/", nil)
		sendJSON(t, c, map[string]string{"op": "subscribe", "topic": "news.a"})
		expectCloseCode(t, c, int(closeAuthBadMessage), "authentication required")
	})
	t.Run("not JSON", func(t *testing.T) {
		c := td.dialHeader(t, "/", nil)
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		expectCloseCode(t, c, int(closeAuthBadMessage), "authentication required")
	})
	t.Run("no token", func(t *testing.T) {
		c := td.dialHeader(t, "/", nil)
		sendJSON(t, c, map[string]string{"op": "auth"})
		expectCloseCode(t, c, int(closeAuthBadMessage), "token")
	})
	t.Run("silence", func(t *testing.T) {
		start := time.Now()
		c := td.dialHeader(t, "/", nil)
		expectCloseCode(t, c, int(closeAuthTimeout), "no auth message")
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("closed after %v, before -auth-timeout 1s", d)
		}
	})
	t.Run("publish reaches no unauthenticated connection", func(t *testing.T) {
		c := td.dialHeader(t, "/?topics=news.a", nil)
		td.publish(t, `{"topic":"news.a","data":"x"}`)
		expectCloseCode(t, c, int(closeAuthTimeout), "no auth message") // and nothing before it
	})
}

// TestAuthPermissions: patterns with {sub}, the personal topic, and
// refusals that leave the connection open.
func TestAuthPermissions(t *testing.T) {
	k := newTestKeys(t)
	td := hsDaemon(t, k)
	tok := mint(t, k.hs, func(c *auth.Claims) { c.Issuer, c.Audience = "wsd-test", []string{"wsd"} })
	c := td.dialHeader(t, "/", bearer(tok))
	cases := []struct {
		op, topic, want string
	}{
		{"subscribe", "news.sport", "subscribed"},
		{"subscribe", "news", "error"}, // "news.*" does not match "news"
		{"subscribe", "user.alice", "subscribed"},
		{"subscribe", "user.bob", "error"},
		{"subscribe", "team.alice.x", "subscribed"},
		{"subscribe", "team.bob.x", "error"},
		{"publish", "chat.alice", "published"},
		{"publish", "chat.bob", "error"},
		{"publish", "news.sport", "error"},
	}
	for _, tc := range cases {
		sendJSON(t, c, map[string]string{"op": tc.op, "topic": tc.topic, "data": "x"})
		m := readMap(t, c)
		if tc.op == "publish" && tc.want == "published" && m["op"] != "published" {
			t.Fatalf("%s %s: %v", tc.op, tc.topic, m)
		}
		if m["op"] != tc.want || (tc.want == "error" && m["code"] != "forbidden") {
			t.Fatalf("%s %s: got %v, want %s", tc.op, tc.topic, m, tc.want)
		}
	}
	// Forbidden topics in the URL: 403 before the upgrade.
	if status, body := td.upgradeAnswer(t, "/?topics=news.a,user.bob", bearer(tok)); status != 403 || !strings.Contains(body, "user.bob") {
		t.Fatalf("?topics=user.bob: %d %q", status, body)
	}
	sendJSON(t, c, map[string]string{"op": "whoami"})
	if m := readMap(t, c); m["op"] != "whoami" || m["user"] != "alice" {
		t.Fatalf("whoami: %v", m)
	}
}

// TestAuthExpiryRefresh: at "exp" a live connection gets {"op":"expired"};
// a refresh within the grace keeps it, none closes it with 4003, and a
// refresh for another user closes it with 4001.
func TestAuthExpiryRefresh(t *testing.T) {
	k := newTestKeys(t)
	td := hsDaemon(t, k, "-auth-refresh-grace", "1s")
	short := func() string {
		return mint(t, k.hs, func(c *auth.Claims) {
			c.Issuer, c.Audience = "wsd-test", []string{"wsd"}
			c.ExpiresAt = time.Now().Add(1500 * time.Millisecond)
		})
	}
	long := func(sub string) string {
		return mint(t, k.hs, func(c *auth.Claims) {
			c.Issuer, c.Audience, c.Subject = "wsd-test", []string{"wsd"}, sub
		})
	}
	t.Run("refreshed", func(t *testing.T) {
		c := td.dialHeader(t, "/", bearer(short()))
		if m := readMap(t, c); m["op"] != "expired" {
			t.Fatalf("got %v, want expired", m)
		}
		sendJSON(t, c, map[string]string{"op": "refresh", "token": long("alice")})
		if m := readMap(t, c); m["op"] != "refreshed" || m["user"] != "alice" {
			t.Fatalf("got %v, want refreshed", m)
		}
		// Past the grace, the connection still answers.
		time.Sleep(1500 * time.Millisecond) // let the grace end: nothing to wait for but time itself
		sendJSON(t, c, map[string]string{"op": "subscribe", "topic": "news.x"})
		if m := readMap(t, c); m["op"] != "subscribed" {
			t.Fatalf("after the grace: %v", m)
		}
	})
	t.Run("not refreshed", func(t *testing.T) {
		c := td.dialHeader(t, "/", bearer(short()))
		if m := readMap(t, c); m["op"] != "expired" {
			t.Fatalf("got %v, want expired", m)
		}
		expectCloseCode(t, c, int(closeAuthExpired), "token expired")
	})
	t.Run("another user", func(t *testing.T) {
		c := td.dialHeader(t, "/", bearer(long("alice")))
		sendJSON(t, c, map[string]string{"op": "refresh", "token": long("bob")})
		expectCloseCode(t, c, int(closeAuthFailed), "another user")
	})
	t.Run("bad refresh token", func(t *testing.T) {
		c := td.dialHeader(t, "/", bearer(long("alice")))
		sendJSON(t, c, map[string]string{"op": "refresh", "token": "x.y.z"})
		expectCloseCode(t, c, int(closeAuthFailed), "malformed token")
	})
}

// TestAuthES256: ECDSA tokens are checked off the event loop (the upgrade
// deferred); an HMAC token "signed" with the public key is refused.
func TestAuthES256(t *testing.T) {
	k := newTestKeys(t)
	td := startWSD(t, "-mode", "push", "-auth", "required", "-auth-jwt-key", k.esPublicFile, "-auth-jwt-alg", "ES")
	if status, body := td.upgradeAnswer(t, "/?topics=news.a", bearer(mint(t, k.es, nil))); status != 101 {
		t.Fatalf("valid ES256: %d %q", status, body)
	}
	confused := hmacWithKey(k.esPublic)
	if status, body := td.upgradeAnswer(t, "/", bearer(confused)); status != 401 || !strings.Contains(body, "algorithm not allowed") {
		t.Fatalf("HMAC with the public key: %d %q", status, body)
	}
	c := td.dialHeader(t, "/", nil)
	sendJSON(t, c, map[string]string{"op": "auth", "token": mint(t, k.es, nil)})
	if m := readMap(t, c); m["op"] != "authenticated" {
		t.Fatalf("auth message: %v", m)
	}
	if st := td.daemon.auth.pool.Stats(); st.Completed < 2 {
		t.Fatalf("the pool ran %d checks, want the ES256 ones (at least 2)", st.Completed)
	}
}

// TestAuthBasic: htpasswd users, good password, bad password, unknown user.
func TestAuthBasic(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	td := startWSD(t, "-mode", "push", "-auth", "required", "-auth-basic-file", file, "-auth-basic-topics", "news.*")
	basic := func(user, pass string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
	}
	for _, tc := range []struct {
		name, user, pass string
		status           int
		reason           string
	}{
		{"good", "alice", "open sesame", 101, ""},
		{"good again (cached)", "alice", "open sesame", 101, ""},
		{"bad password", "alice", "guess", 401, "bad user name or password"},
		{"unknown user", "mallory", "open sesame", 401, "bad user name or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := td.upgradeAnswer(t, "/?topics=news.a,user."+tc.user, basic(tc.user, tc.pass))
			if status != tc.status || !strings.Contains(body, tc.reason) || strings.Contains(body, tc.pass) {
				t.Fatalf("got %d %q, want %d %q", status, body, tc.status, tc.reason)
			}
		})
	}
	if status, _ := td.upgradeAnswer(t, "/?topics=secret", basic("alice", "open sesame")); status != 403 {
		t.Fatalf("a topic the basic users may not have: %d, want 403", status)
	}
}

// TestAuthOptional: anonymous clients get the anonymous topics only.
func TestAuthOptional(t *testing.T) {
	k := newTestKeys(t)
	td := startWSD(t, "-mode", "push", "-auth", "optional", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS", "-auth-anonymous-topics", "public.*")
	c := td.dialHeader(t, "/?topics=public.a", nil)
	sendJSON(t, c, map[string]string{"op": "subscribe", "topic": "news.a"})
	if m := readMap(t, c); m["code"] != "forbidden" {
		t.Fatalf("anonymous subscribe to news.a: %v", m)
	}
	sendJSON(t, c, map[string]string{"op": "auth", "token": mint(t, k.hs, nil)})
	if m := readMap(t, c); m["op"] != "authenticated" || m["user"] != "alice" {
		t.Fatalf("auth after anonymous: %v", m)
	}
	sendJSON(t, c, map[string]string{"op": "subscribe", "topic": "news.a"})
	if m := readMap(t, c); m["op"] != "subscribed" {
		t.Fatalf("subscribe after auth: %v", m)
	}
	if status, _ := td.upgradeAnswer(t, "/?topics=news.a", nil); status != 403 {
		t.Fatalf("anonymous ?topics=news.a: %d, want 403", status)
	}
}

// TestAuthChat: chat mode, the room is the topic: a token that allows the
// room joins it (header or auth message), one that does not gets 403 on
// the upgrade or close 4004 after the auth message.
func TestAuthChat(t *testing.T) {
	k := newTestKeys(t)
	td := startWSD(t, "-mode", "chat", "-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS")
	tok := mint(t, k.hs, func(c *auth.Claims) { c.Topics, c.Publish = []string{"room.*"}, []string{"room.*"} })
	a := td.dialHeader(t, "/room.a", bearer(tok))
	b := td.dialHeader(t, "/room.a", nil)
	sendJSON(t, b, map[string]string{"op": "auth", "token": tok})
	if m := readMap(t, b); m["op"] != "authenticated" {
		t.Fatalf("chat auth message: %v", m)
	}
	if err := a.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(adminTimeout))
	if _, p, err := b.ReadMessage(); err != nil || string(p) != "hi" {
		t.Fatalf("b got %q, %v", p, err)
	}
	if status, _ := td.upgradeAnswer(t, "/secret", bearer(tok)); status != 403 {
		t.Fatalf("room not allowed: %d, want 403", status)
	}
	c := td.dialHeader(t, "/secret", nil)
	sendJSON(t, c, map[string]string{"op": "auth", "token": tok})
	expectCloseCode(t, c, int(closeAuthForbidden), "secret")
}

// TestAuthConfig: the settings that cannot work together are refused.
func TestAuthConfig(t *testing.T) {
	k := newTestKeys(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-auth", "required"}, "needs -auth-jwt-key or -auth-basic-file"},
		{[]string{"-auth", "required", "-auth-jwt-key", k.secretFile}, "needs -auth-jwt-alg"},
		{[]string{"-auth", "required", "-auth-jwt-key", k.esPublicFile, "-auth-jwt-alg", "HS"}, "-auth-jwt-key"},
		{[]string{"-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "ES"}, "-auth-jwt-key"},
		{[]string{"-auth-jwt-key", k.secretFile}, "needs -auth optional or required"},
		{[]string{"-auth", "sometimes"}, "invalid auth mode"},
		{[]string{"-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS", "-mode", "echo"}, "echo mode"},
		{[]string{"-auth", "required", "-auth-jwt-key", k.secretFile, "-auth-jwt-alg", "HS", "-client-publish", "*"}, "-client-publish"},
	} {
		_, _, err := loadConfig(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
