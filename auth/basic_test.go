package auth

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// bcryptHash hashes password at the lowest cost, so that tests run fast.
func bcryptHash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// basicHeader is the Authorization header for name and password.
func basicHeader(name, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+password))
}

// testHtpasswd is a file with alice (password "wonderland", hashed as
// $2y$ like htpasswd -B does) and bob ("builder").
func testHtpasswd(t testing.TB) []byte {
	t.Helper()
	alice := "$2y$" + strings.TrimPrefix(bcryptHash(t, "wonderland"), "$2a$")
	return []byte("# users\n\nalice:" + alice + "\nbob:" + bcryptHash(t, "builder") + "\r\n")
}

// TestBasicCheck checks good and bad credentials, with the status and
// reason the client gets.
func TestBasicCheck(t *testing.T) {
	h, err := ParseHtpasswd(testHtpasswd(t), BasicOptions{Permissions: Permissions{Subscribe: []string{"news.*"}, Publish: []string{"chat.{sub}"}}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, header string
		user         string // "" for a refusal
		reason       string
	}{
		{"alice", basicHeader("alice", "wonderland"), "alice", ""},
		{"bob", basicHeader("bob", "builder"), "bob", ""},
		{"scheme in lower case", "basic " + base64.StdEncoding.EncodeToString([]byte("bob:builder")), "bob", ""},
		{"wrong password", basicHeader("alice", "builder"), "", "bad user name or password"},
		{"empty password", basicHeader("alice", ""), "", "bad user name or password"},
		{"unknown user", basicHeader("carol", "wonderland"), "", "bad user name or password"},
		{"user name that is no user id", basicHeader("a.b", "x"), "", "bad user name or password"},
		{"password over 72 bytes", basicHeader("alice", "wonderland"+strings.Repeat("x", 70)), "", "bad user name or password"},
		{"no header", "", "", "credentials required"},
		{"bearer", "Bearer abc", "", "malformed basic credentials"},
		{"no credentials", "Basic ", "", "malformed basic credentials"},
		{"not base64", "Basic !!!", "", "malformed basic credentials"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), "", "malformed basic credentials"},
		{"too long", basicHeader("alice", strings.Repeat("x", 500)), "", "malformed basic credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := h.CheckBasic(c.header)
			if c.user != "" {
				if err != nil || id.Sub != c.user {
					t.Fatalf("CheckBasic: %v, %v; want %s", id, err, c.user)
				}
				if !id.CanSubscribe("news.x") || !id.CanSubscribe("user."+c.user) || !id.CanPublish("chat."+c.user) || id.CanPublish("chat.x") || !id.Expires.IsZero() {
					t.Errorf("permissions of %s", c.user)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || e.Reason != c.reason || id != nil {
				t.Fatalf("CheckBasic: %v, %v; want 401 %q", id, err, c.reason)
			}
		})
	}
}

// TestBasicLoad checks the files LoadHtpasswd refuses, and that its errors
// name the file and the line.
func TestBasicLoad(t *testing.T) {
	good := bcryptHash(t, "pw")
	cases := []struct {
		name, data, want string
	}{
		{"MD5", "alice:" + good + "\nbob:$apr1$abc$def\n", `:2: user "bob": an MD5 hash`},
		{"SHA-1", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", `:1: user "bob": a SHA-1 hash`},
		{"SHA-crypt", "bob:$6$salt$hash\n", `:1: user "bob": a SHA-crypt hash`},
		{"plain", "bob:secret\n", `:1: user "bob": not a bcrypt hash`},
		{"crypt", "bob:rl.3StKT.4T8M\n", `:1: user "bob": not a bcrypt hash`},
		{"old bcrypt prefix", "bob:$2$" + good[4:] + "\n", `:1: user "bob": not a bcrypt hash`},
		{"bad bcrypt", "bob:$2y$10$short\n", `:1: user "bob": malformed bcrypt hash`},
		{"bad cost", "bob:$2y$99$" + good[7:] + "\n", `:1: user "bob": malformed bcrypt hash`},
		{"no colon", "# x\nbob\n", ":2: not name:hash"},
		{"bad name", "a.b:" + good + "\n", `:1: user name "a.b"`},
		{"twice", "bob:" + good + "\nbob:" + good + "\n", `:2: user "bob" is named twice`},
		{"no users", "# nobody\n", ": no users"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "htpasswd")
			if err := os.WriteFile(path, []byte(c.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadHtpasswd(path, BasicOptions{})
			if err == nil || !strings.Contains(err.Error(), path+c.want) {
				t.Fatalf("LoadHtpasswd: %v, want an error with %q", err, path+c.want)
			}
			if _, err := ParseHtpasswd([]byte(c.data), BasicOptions{}); err == nil || !strings.HasPrefix(err.Error(), "auth: htpasswd"+c.want) {
				t.Fatalf("ParseHtpasswd: %v, want an error with %q", err, "htpasswd"+c.want)
			}
		})
	}
	if _, err := LoadHtpasswd(filepath.Join(dir, "none"), BasicOptions{}); err == nil {
		t.Error("LoadHtpasswd of a missing file")
	}
	if _, err := ParseHtpasswd([]byte("bob:"+good), BasicOptions{Permissions: Permissions{Publish: []string{"a*b"}}}); err == nil || !strings.Contains(err.Error(), "basic-auth publish") {
		t.Errorf("a bad pattern: %v", err)
	}
	path := filepath.Join(dir, "ok")
	if err := os.WriteFile(path, testHtpasswd(t), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := LoadHtpasswd(path, BasicOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := h.CheckBasic(basicHeader("alice", "wonderland")); err != nil || id.Sub != "alice" {
		t.Errorf("CheckBasic: %v, %v", id, err)
	}
}

// TestBasicCache checks that successes are cached for CacheTTL, failures
// never, and that the cache is bounded.
func TestBasicCache(t *testing.T) {
	h, err := ParseHtpasswd(testHtpasswd(t), BasicOptions{CacheSize: 1, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	h.cache.now = func() time.Time { return now }
	alice, bob := basicHeader("alice", "wonderland"), basicHeader("bob", "builder")

	if _, ok := h.Cached(alice); ok {
		t.Fatal("cached before any check")
	}
	if _, err := h.CheckBasic(basicHeader("alice", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, ok := h.Cached(basicHeader("alice", "wrong")); ok || h.cache.len() != 0 {
		t.Fatal("a failure was cached")
	}
	if _, err := h.CheckBasic(alice); err != nil {
		t.Fatal(err)
	}
	if id, ok := h.Cached(alice); !ok || id.Sub != "alice" {
		t.Fatal("a success was not cached")
	}
	if _, ok := h.Cached(basicHeader("alice", "wonderland2")); ok {
		t.Fatal("another password hits the cache")
	}
	if _, ok := h.Cached("Basic !!!"); ok {
		t.Fatal("a malformed header hits the cache")
	}

	now = now.Add(59 * time.Second)
	if _, ok := h.Cached(alice); !ok {
		t.Fatal("expired before CacheTTL")
	}
	now = now.Add(time.Second)
	if _, ok := h.Cached(alice); ok || h.cache.len() != 0 {
		t.Fatal("still cached after CacheTTL")
	}

	// A size of 1: bob's success evicts alice's.
	if _, err := h.CheckBasic(alice); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CheckBasic(bob); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Cached(alice); ok || h.cache.len() != 1 {
		t.Fatal("the cache grew past CacheSize")
	}
	if _, ok := h.Cached(bob); !ok {
		t.Fatal("the latest success was evicted")
	}

	off, err := ParseHtpasswd(testHtpasswd(t), BasicOptions{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.CheckBasic(alice); err != nil {
		t.Fatal(err)
	}
	if _, ok := off.Cached(alice); ok {
		t.Fatal("cached with CacheSize -1")
	}
}

// TestBasicCacheConcurrent checks the cache under concurrent checks, for
// the race detector.
func TestBasicCacheConcurrent(t *testing.T) {
	h, err := ParseHtpasswd(testHtpasswd(t), BasicOptions{CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	headers := []string{basicHeader("alice", "wonderland"), basicHeader("bob", "builder"), basicHeader("alice", "x")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 6 {
				hd := headers[(g+i)%len(headers)]
				id, err := h.CheckBasic(hd)
				if (err == nil) != (hd != headers[2]) {
					t.Errorf("CheckBasic: %v, %v", id, err)
				}
				h.Cached(hd)
			}
		})
	}
	wg.Wait()
}
