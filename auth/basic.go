package auth

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults of BasicOptions.
const (
	DefaultCacheSize = 4096
	DefaultCacheTTL  = time.Minute
)

// maxBasicHeader bounds an Authorization header with basic credentials: a
// user id of MaxSubBytes and a password of maxPassword, base64-encoded,
// fit well within it.
const maxBasicHeader = 512

// maxPassword is bcrypt's limit: it ignores bytes past the 72nd, so a
// longer password could match a hash it was never hashed to.
const maxPassword = 72

// BasicOptions configures an Htpasswd.
type BasicOptions struct {
	// Permissions are granted to every user, in addition to its personal
	// topic. "{sub}" stands for the user name.
	Permissions
	// CacheSize is how many successful checks are remembered, so that a
	// client that reconnects does not cost another bcrypt run. 0 means
	// DefaultCacheSize (4096); negative, no cache.
	CacheSize int
	// CacheTTL is how long a successful check is remembered. 0 means
	// DefaultCacheTTL (1 minute); negative, no cache.
	CacheTTL time.Duration
}

// Htpasswd checks HTTP basic credentials (RFC 7617) against an htpasswd
// file of bcrypt hashes. It is safe for concurrent use.
//
// A bcrypt check takes tens of milliseconds by design (about 50 to 100 ms
// at cost 10), so CheckBasic must not run on an event loop: run it on a
// Pool, after Cached, which is cheap, found no remembered result.
//
// The cache trades some security for speed. A hit skips bcrypt, so for
// CacheTTL after a successful login the same user name and password are
// accepted at the cost of one SHA-256 instead of one bcrypt, and the
// process memory holds a fast keyed hash (HMAC-SHA-256 under a random
// per-process key) of each recent password: someone who can read that
// memory can guess those passwords far faster than against bcrypt. Only
// successes are cached: a wrong password always costs a full bcrypt run,
// which the Pool bounds. Credentials removed from the file stop working
// when the file is loaded again, since every Htpasswd has its own cache.
type Htpasswd struct {
	users map[string]basicUser
	dummy []byte // the hash checked for unknown users, so they take as long
	key   [32]byte
	cache *cache // nil: no cache
}

// basicUser is one line of the file.
type basicUser struct {
	hash []byte
	id   *Identity
}

// LoadHtpasswd reads an htpasswd file (see ParseHtpasswd). Errors name the
// file and the line.
func LoadHtpasswd(path string, opts BasicOptions) (*Htpasswd, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return parseHtpasswd(b, path, opts)
}

// ParseHtpasswd reads htpasswd data: lines "name:hash", where name is a
// valid user id (see the package doc) and hash a bcrypt hash ($2a$, $2b$
// or $2y$, as made by "htpasswd -B"); blank lines and lines that start
// with "#" are skipped. Any other hash (MD5 "$apr1$", SHA-1 "{SHA}",
// crypt, SHA-crypt, plain text) is refused with an error that names the
// line: those are fast to brute-force, or not hashes at all. So are a
// user named twice and data with no user. ParseHtpasswd runs bcrypt once,
// to make the hash that unknown users are checked against.
func ParseHtpasswd(data []byte, opts BasicOptions) (*Htpasswd, error) {
	return parseHtpasswd(data, "htpasswd", opts)
}

// parseHtpasswd is ParseHtpasswd; errors name src, the file.
func parseHtpasswd(data []byte, src string, opts BasicOptions) (*Htpasswd, error) {
	sub, pub, err := opts.compile()
	if err != nil {
		return nil, fmt.Errorf("auth: basic-auth %w", err)
	}
	lineErr := func(n int, format string, args ...any) error {
		return fmt.Errorf("auth: %s:%d: %s", src, n, fmt.Sprintf(format, args...))
	}
	h := &Htpasswd{users: make(map[string]basicUser)}
	maxCost := bcrypt.MinCost
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, lineErr(n, "not name:hash")
		}
		if why := checkSub(name); why != "" {
			return nil, lineErr(n, "user name %s: %s", quoteShort(name), why)
		}
		if _, dup := h.users[name]; dup {
			return nil, lineErr(n, "user %q is named twice", name)
		}
		cost, err := checkHash(hash)
		if err != nil {
			return nil, lineErr(n, "user %q: %v", name, err)
		}
		maxCost = max(maxCost, cost)
		h.users[name] = basicUser{hash: []byte(hash), id: &Identity{Sub: name, subscribe: sub, publish: pub}}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: %s: %w", src, err)
	}
	if len(h.users) == 0 {
		return nil, fmt.Errorf("auth: %s: no users", src)
	}
	var pw [16]byte
	_, _ = rand.Read(pw[:]) // crypto/rand.Read never fails
	if h.dummy, err = bcrypt.GenerateFromPassword(pw[:], maxCost); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	_, _ = rand.Read(h.key[:])
	if opts.CacheSize >= 0 && opts.CacheTTL >= 0 {
		h.cache = newCache(cmp.Or(opts.CacheSize, DefaultCacheSize), cmp.Or(opts.CacheTTL, DefaultCacheTTL))
	}
	return h, nil
}

// checkHash returns the cost of a bcrypt hash, or why hash is not one.
func checkHash(hash string) (int, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return 0, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return cost, nil
	case strings.HasPrefix(hash, "$apr1$"), strings.HasPrefix(hash, "$1$"):
		return 0, errors.New(`an MD5 hash: only bcrypt is accepted ("htpasswd -B")`)
	case strings.HasPrefix(hash, "{SHA}"):
		return 0, errors.New(`a SHA-1 hash: only bcrypt is accepted ("htpasswd -B")`)
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return 0, errors.New(`a SHA-crypt hash: only bcrypt is accepted ("htpasswd -B")`)
	}
	return 0, errors.New(`not a bcrypt hash (crypt or plain text?): only bcrypt is accepted ("htpasswd -B")`)
}

// Cached returns the identity of an Authorization header whose credentials
// were checked successfully less than CacheTTL ago, and false otherwise
// (then CheckBasic decides). It costs a base64 decoding and an
// HMAC-SHA-256, a microsecond or so: it may run on an event loop.
func (h *Htpasswd) Cached(header string) (*Identity, bool) {
	if h.cache == nil {
		return nil, false
	}
	name, pass, err := parseBasic(header)
	if err != nil {
		return nil, false
	}
	id := h.cache.get(h.cacheKey(name, pass))
	return id, id != nil
}

// CheckBasic checks the credentials of an Authorization header value
// "Basic base64(name:password)". It returns the user's identity (Sub is
// the user name; the permissions are BasicOptions'), or ErrNoCredentials
// for an empty header, ErrMalformedBasic for another scheme or a bad
// encoding, and ErrBadCredentials for an unknown user or a wrong password
// alike: both take a bcrypt run, so neither the answer nor its time tells
// which user names exist.
//
// Unless the result is cached, CheckBasic runs bcrypt: never call it on an
// event loop (see Pool).
func (h *Htpasswd) CheckBasic(header string) (*Identity, error) {
	name, pass, err := parseBasic(header)
	if err != nil {
		return nil, err
	}
	var k cacheKey
	if h.cache != nil {
		k = h.cacheKey(name, pass)
		if id := h.cache.get(k); id != nil {
			return id, nil
		}
	}
	u, known := h.users[name]
	if !known || len(pass) > maxPassword {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pass))
		return nil, ErrBadCredentials
	}
	if bcrypt.CompareHashAndPassword(u.hash, []byte(pass)) != nil {
		return nil, ErrBadCredentials
	}
	if h.cache != nil {
		h.cache.put(k, u.id)
	}
	return u.id, nil
}

// cacheKey is HMAC-SHA-256(h.key, name NUL password). A user name has no
// NUL, so no two pairs share the input.
func (h *Htpasswd) cacheKey(name, pass string) cacheKey {
	m := hmac.New(sha256.New, h.key[:])
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// parseBasic splits "Basic base64(name:password)" (RFC 7617; the scheme is
// case-insensitive).
func parseBasic(header string) (name, pass string, err error) {
	const scheme = "basic "
	switch {
	case header == "":
		return "", "", ErrNoCredentials
	case len(header) > maxBasicHeader, len(header) <= len(scheme), !strings.EqualFold(header[:len(scheme)], scheme):
		return "", "", ErrMalformedBasic
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimLeft(header[len(scheme):], " "))
	if err != nil {
		return "", "", ErrMalformedBasic
	}
	name, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", ErrMalformedBasic
	}
	return name, pass, nil
}
