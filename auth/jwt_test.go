package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsdproject/wsd/auth"
)

// p384Key is a PEM P-384 private key and its public key.
func p384Key(t testing.TB) keyPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(k.Public())
	return keyPair{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})}
}

// b64 is base64url without padding, a JWT segment.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestJWTVerify checks every kind of token against a verifier, with the
// status and reason the client gets.
func TestJWTVerify(t *testing.T) {
	keys := testKeys()
	p384 := p384Key(t)
	hs := keys[auth.AlgHS].private
	long := make([]byte, 64) // a secret long enough for HS512
	copy(long, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	hsValid := signRaw(t, jwt.SigningMethodHS256, hs, validClaims())
	parts := strings.Split(hsValid, ".")

	type tc struct {
		name   string
		alg    string      // the verifier's family, with the key of testKeys
		cfg    auth.Config // the verifier's other settings
		token  string
		reason string // "" for a valid token
	}
	cases := []tc{
		// Valid tokens of each family.
		{name: "HS256 valid", alg: auth.AlgHS, token: hsValid},
		{name: "RS256 valid", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodRS256, keys[auth.AlgRS].private, validClaims())},
		{name: "RS512 valid", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodRS512, keys[auth.AlgRS].private, validClaims())},
		{name: "PS256 valid", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodPS256, keys[auth.AlgRS].private, validClaims())},
		{name: "ES256 valid", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodES256, keys[auth.AlgES].private, validClaims())},
		{name: "EdDSA valid", alg: auth.AlgEdDSA, token: signRaw(t, jwt.SigningMethodEdDSA, keys[auth.AlgEdDSA].private, validClaims())},
		{name: "with issuer and audience", alg: auth.AlgHS, cfg: auth.Config{Issuer: "iss.example", Audience: "wsd"},
			token: signRaw(t, jwt.SigningMethodHS256, hs, with("iss", "iss.example", "aud", []string{"other", "wsd"}))},

		// Time, with the default leeway of 30 s.
		{name: "expired", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("exp", testNow.Add(-time.Minute).Unix())), reason: "token expired"},
		{name: "expired within leeway", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("exp", testNow.Add(-10*time.Second).Unix()))},
		{name: "expired, no leeway", alg: auth.AlgHS, cfg: auth.Config{Leeway: -1}, token: signRaw(t, jwt.SigningMethodHS256, hs, with("exp", testNow.Add(-10*time.Second).Unix())), reason: "token expired"},
		{name: "not yet valid (nbf)", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("nbf", testNow.Add(time.Minute).Unix())), reason: "token not yet valid"},
		{name: "nbf within leeway", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("nbf", testNow.Add(20*time.Second).Unix()))},
		{name: "issued in the future beyond leeway", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("iat", testNow.Add(time.Minute).Unix())), reason: "token issued in the future"},
		{name: "iat within leeway", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("iat", testNow.Add(20*time.Second).Unix()))},
		{name: "no exp", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("exp", nil)), reason: "token has no expiry"},
		{name: "exp not a number", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("exp", "tomorrow")), reason: "malformed token"},

		// Issuer and audience.
		{name: "wrong issuer", alg: auth.AlgHS, cfg: auth.Config{Issuer: "iss.example"}, token: signRaw(t, jwt.SigningMethodHS256, hs, with("iss", "evil.example")), reason: "wrong issuer"},
		{name: "no issuer", alg: auth.AlgHS, cfg: auth.Config{Issuer: "iss.example"}, token: hsValid, reason: "wrong issuer"},
		{name: "wrong audience", alg: auth.AlgHS, cfg: auth.Config{Audience: "wsd"}, token: signRaw(t, jwt.SigningMethodHS256, hs, with("aud", "other")), reason: "wrong audience"},
		{name: "no audience", alg: auth.AlgHS, cfg: auth.Config{Audience: "wsd"}, token: hsValid, reason: "wrong audience"},
		{name: "issuer and audience not checked when not configured", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("iss", "x", "aud", "y"))},

		// Keys and algorithms.
		{name: "wrong HMAC secret", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, keys["other "+auth.AlgHS].private, validClaims()), reason: "bad signature"},
		{name: "wrong RSA key", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodRS256, keys["other "+auth.AlgRS].private, validClaims()), reason: "bad signature"},
		{name: "wrong ECDSA key", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodES256, keys["other "+auth.AlgES].private, validClaims()), reason: "bad signature"},
		{name: "wrong Ed25519 key", alg: auth.AlgEdDSA, token: signRaw(t, jwt.SigningMethodEdDSA, keys["other "+auth.AlgEdDSA].private, validClaims()), reason: "bad signature"},
		{name: "payload changed", alg: auth.AlgHS, token: parts[0] + "." + b64(`{"sub":"mallory","exp":1999999999}`) + "." + parts[2], reason: "bad signature"},
		{name: "alg none", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodNone, nil, validClaims()), reason: "algorithm not allowed"},
		{name: "alg none, public key", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodNone, nil, validClaims()), reason: "algorithm not allowed"},
		{name: "alg none, signature kept", alg: auth.AlgHS, token: b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "." + parts[2], reason: "algorithm not allowed"},
		{name: "no alg", alg: auth.AlgHS, token: b64(`{"typ":"JWT"}`) + "." + parts[1] + "." + parts[2], reason: "algorithm not allowed"},
		{name: "unknown alg", alg: auth.AlgHS, token: b64(`{"alg":"XS999"}`) + "." + parts[1] + "." + parts[2], reason: "algorithm not allowed"},
		{name: "HS256 signed with the RSA public key", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodHS256, keys[auth.AlgRS].public, validClaims()), reason: "algorithm not allowed"},
		{name: "HS256 signed with the ECDSA public key", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodHS256, keys[auth.AlgES].public, validClaims()), reason: "algorithm not allowed"},
		{name: "HS256 signed with the Ed25519 public key", alg: auth.AlgEdDSA, token: signRaw(t, jwt.SigningMethodHS256, keys[auth.AlgEdDSA].public, validClaims()), reason: "algorithm not allowed"},
		{name: "RS256 token, ECDSA key", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodRS256, keys[auth.AlgRS].private, validClaims()), reason: "algorithm not allowed"},
		{name: "ES256 token, RSA key", alg: auth.AlgRS, token: signRaw(t, jwt.SigningMethodES256, keys[auth.AlgES].private, validClaims()), reason: "algorithm not allowed"},
		{name: "EdDSA token, HMAC secret", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodEdDSA, keys[auth.AlgEdDSA].private, validClaims()), reason: "algorithm not allowed"},
		{name: "ES384 token, P-256 key", alg: auth.AlgES, token: signRaw(t, jwt.SigningMethodES384, p384.private, validClaims()), reason: "algorithm not allowed"},
		{name: "HS384 token, 32-byte secret", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS384, hs, validClaims()), reason: "algorithm not allowed"},

		// Malformed and oversized.
		{name: "empty", alg: auth.AlgHS, token: "", reason: "malformed token"},
		{name: "one segment", alg: auth.AlgHS, token: "abc", reason: "malformed token"},
		{name: "four segments", alg: auth.AlgHS, token: hsValid + ".x", reason: "malformed token"},
		{name: "header not base64", alg: auth.AlgHS, token: "!!!." + parts[1] + "." + parts[2], reason: "malformed token"},
		{name: "header not JSON", alg: auth.AlgHS, token: b64("{alg") + "." + parts[1] + "." + parts[2], reason: "malformed token"},
		{name: "claims not JSON", alg: auth.AlgHS, token: parts[0] + "." + b64("[1,2]") + "." + parts[2], reason: "malformed token"},
		{name: "signature not base64", alg: auth.AlgHS, token: parts[0] + "." + parts[1] + ".***", reason: "malformed token"},
		{name: "padded segment", alg: auth.AlgHS, token: parts[0] + "." + parts[1] + "." + parts[2] + "=", reason: "malformed token"},
		{name: "topics not a list", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("topics", "news")), reason: "malformed token"},
		{name: "oversized", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("pad", strings.Repeat("x", 4096))), reason: "token too long"},
		{name: "oversized garbage", alg: auth.AlgHS, token: strings.Repeat("a", 4097), reason: "token too long"},
		{name: "larger limit", alg: auth.AlgHS, cfg: auth.Config{MaxTokenBytes: 8 << 10}, token: signRaw(t, jwt.SigningMethodHS256, hs, with("pad", strings.Repeat("x", 4096)))},

		// wsd's claims.
		{name: "missing sub", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("sub", nil)), reason: "token has no subject"},
		{name: "empty sub", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("sub", "")), reason: "token has no subject"},
		{name: "sub with a dot", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("sub", "a.b")), reason: "subject is not a valid user id"},
		{name: "sub with a star", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("sub", "*")), reason: "subject is not a valid user id"},
		{name: "info too large", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("info", map[string]string{"x": strings.Repeat("y", 1024)})), reason: "info too large"},
		{name: "info not an object", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("info", []int{1})), reason: "info is not a JSON object"},
		{name: "info null", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("info", jsonNull{}))},
		{name: "bad topic pattern", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("topics", []string{"a*b"})), reason: "bad topic pattern in token"},
		{name: "bad publish pattern", alg: auth.AlgHS, token: signRaw(t, jwt.SigningMethodHS256, hs, with("publish", []string{"{user}"})), reason: "bad topic pattern in token"},
	}
	// Valid tokens of the other HMAC sizes and of P-384, with their own keys.
	es384, err := auth.NewJWT(auth.Config{Alg: auth.AlgES, Key: p384.public})
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := auth.NewJWT(auth.Config{Alg: auth.AlgHS, Key: long})
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]*auth.JWT{
		"ES384 valid": es384,
		"HS512 valid": hs512,
		"HS384 valid": hs512,
	}
	cases = append(cases,
		tc{name: "ES384 valid", token: signRaw(t, jwt.SigningMethodES384, p384.private, validClaims())},
		tc{name: "HS512 valid", token: signRaw(t, jwt.SigningMethodHS512, long, validClaims())},
		tc{name: "HS384 valid", token: signRaw(t, jwt.SigningMethodHS384, long, validClaims())},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := own[c.name]
			if j == nil {
				j = verifier(t, c.alg, c.cfg)
			}
			id, err := j.Verify(c.token, testNow)
			if c.reason == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want a valid token", err)
				}
				if id.Sub != "alice" || id.Expires.IsZero() {
					t.Errorf("identity %q expiring %v, want alice with an expiry", id.Sub, id.Expires)
				}
				return
			}
			var e *auth.Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify: %v (%T), want *auth.Error %q", err, err, c.reason)
			}
			if id != nil {
				t.Errorf("an identity with the error %v", err)
			}
			if e.Status != http.StatusUnauthorized || e.Reason != c.reason || auth.Status(err) != http.StatusUnauthorized {
				t.Errorf("got %d %q, want 401 %q", e.Status, e.Reason, c.reason)
			}
			if len(c.token) >= 8 && strings.Contains(err.Error(), c.token[len(c.token)-8:]) {
				t.Errorf("the error %q repeats the token", err)
			}
		})
	}
}

// jsonNull marshals as JSON null.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// TestJWTIdentity checks what a valid token gives: user, expiry, info and
// permissions.
func TestJWTIdentity(t *testing.T) {
	j := verifier(t, auth.AlgHS, auth.Config{})
	id, err := j.Verify(signRaw(t, jwt.SigningMethodHS256, testKeys()[auth.AlgHS].private, validClaims()), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if id.Sub != "alice" || !id.Expires.Equal(testNow.Add(time.Hour)) || string(id.Info) != `{"name":"Alice"}` {
		t.Errorf("Sub %q, Expires %v, Info %s", id.Sub, id.Expires, id.Info)
	}
	auth.WantPermissions(t, id, map[string]bool{
		"news.eu": true, "news.eu.fr": true, "news": false, "chat.alice": true, "chat.bob": false,
		"user.alice": true, "user.bob": false, "other": false,
	}, map[string]bool{"chat.alice": true, "chat.bob": false, "news.eu": false, "user.alice": false})
}

// TestJWTConfig checks what NewJWT refuses.
func TestJWTConfig(t *testing.T) {
	keys := testKeys()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, append(keys[auth.AlgHS].private, "\r\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "es.pub")
	if err := os.WriteFile(pubFile, keys[auth.AlgES].public, 0o600); err != nil {
		t.Fatal(err)
	}
	small := func() []byte {
		k, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := x509.MarshalPKIXPublicKey(k.Public())
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b})
	}()
	cases := []struct {
		name string
		cfg  auth.Config
		want string // a part of the error; "" for none
	}{
		{"HS", auth.Config{Alg: auth.AlgHS, Key: keys[auth.AlgHS].private}, ""},
		{"HS from a file with a line break", auth.Config{Alg: auth.AlgHS, KeyFile: secretFile}, ""},
		{"ES from a file", auth.Config{Alg: auth.AlgES, KeyFile: pubFile}, ""},
		{"unknown family", auth.Config{Alg: "HS256", Key: keys[auth.AlgHS].private}, `algorithm family "HS256"`},
		{"no key", auth.Config{Alg: auth.AlgHS}, "no key"},
		{"both keys", auth.Config{Alg: auth.AlgHS, Key: keys[auth.AlgHS].private, KeyFile: secretFile}, "both Key and KeyFile"},
		{"missing file", auth.Config{Alg: auth.AlgHS, KeyFile: filepath.Join(dir, "none")}, "no such file"},
		{"short secret", auth.Config{Alg: auth.AlgHS, Key: []byte("secret")}, "6 bytes, at least 32"},
		{"public key as secret", auth.Config{Alg: auth.AlgHS, Key: keys[auth.AlgRS].public}, "the HS secret is a PEM key"},
		{"private key to verify", auth.Config{Alg: auth.AlgES, Key: keys[auth.AlgES].private}, "give the verifier the public key"},
		{"not PEM", auth.Config{Alg: auth.AlgRS, Key: []byte("not a key")}, "not PEM"},
		{"RSA key for ES", auth.Config{Alg: auth.AlgES, Key: keys[auth.AlgRS].public}, "an RSA key is not of the ES family"},
		{"Ed25519 key for RS", auth.Config{Alg: auth.AlgRS, Key: keys[auth.AlgEdDSA].public}, "an Ed25519 key is not of the RS family"},
		{"P-224", auth.Config{Alg: auth.AlgES, Key: small}, "P-224 is not P-256"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := auth.NewJWT(c.cfg)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("NewJWT: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("NewJWT: %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestJWTMethods checks the algorithms each family allows.
func TestJWTMethods(t *testing.T) {
	for alg, want := range map[string]string{
		auth.AlgHS:    "HS256",
		auth.AlgRS:    "RS256 RS384 RS512 PS256 PS384 PS512",
		auth.AlgES:    "ES256",
		auth.AlgEdDSA: "EdDSA",
	} {
		if got := strings.Join(verifier(t, alg, auth.Config{}).Methods(), " "); got != want {
			t.Errorf("%s: %s, want %s", alg, got, want)
		}
	}
}

// TestMint checks that minted tokens of every family verify, and what Mint
// refuses.
func TestMint(t *testing.T) {
	keys := testKeys()
	claims := auth.Claims{
		Subject: "bob", ExpiresAt: testNow.Add(time.Minute), IssuedAt: testNow, NotBefore: testNow, ID: "1",
		Topics: []string{"a.*"}, Publish: []string{"b"}, Info: []byte(`{"x":1}`),
	}
	for _, alg := range []string{auth.AlgHS, auth.AlgRS, auth.AlgES, auth.AlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			cfg := auth.Config{Alg: alg, Key: keys[alg].private, Issuer: "i", Audience: "a"}
			tok, err := auth.Mint(cfg, claims)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Key = keys[alg].public
			j, err := auth.NewJWT(cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := j.Verify(tok, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if id.Sub != "bob" || !id.CanSubscribe("a.x") || !id.CanPublish("b") || string(id.Info) != `{"x":1}` {
				t.Errorf("identity %+v", id)
			}
			if _, err := j.Verify(tok, testNow.Add(2*time.Minute)); !errors.Is(err, auth.ErrExpired) {
				t.Errorf("after exp: %v", err)
			}
		})
	}
	bad := []struct {
		name string
		edit func(*auth.Claims, *auth.Config)
		want string
	}{
		{"no subject", func(c *auth.Claims, _ *auth.Config) { c.Subject = "" }, "subject"},
		{"bad subject", func(c *auth.Claims, _ *auth.Config) { c.Subject = "a b" }, "subject"},
		{"no expiry", func(c *auth.Claims, _ *auth.Config) { c.ExpiresAt = time.Time{} }, "ExpiresAt is required"},
		{"bad pattern", func(c *auth.Claims, _ *auth.Config) { c.Topics = []string{"*a"} }, `topics: topic pattern "*a"`},
		{"info not an object", func(c *auth.Claims, _ *auth.Config) { c.Info = []byte(`"x"`) }, "info is not a JSON object"},
		{"info too large", func(c *auth.Claims, cfg *auth.Config) { cfg.MaxInfoBytes = 4 }, "info too large"},
		{"public key", func(_ *auth.Claims, cfg *auth.Config) { cfg.Alg, cfg.Key = auth.AlgES, keys[auth.AlgES].public }, "not a private key"},
		{"wrong family", func(_ *auth.Claims, cfg *auth.Config) { cfg.Alg, cfg.Key = auth.AlgES, keys[auth.AlgRS].private }, "an RSA key is not of the ES family"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			c, cfg := claims, auth.Config{Alg: auth.AlgHS, Key: keys[auth.AlgHS].private}
			b.edit(&c, &cfg)
			if _, err := auth.Mint(cfg, c); err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("Mint: %v, want an error with %q", err, b.want)
			}
		})
	}
}

// TestBearer checks the parsing of an Authorization header.
func TestBearer(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer  abc": "abc", "BEARER a.b.c": "a.b.c",
		"Bearer ": "", "Bearer": "", "Basic abc": "", "": "", "Bearerabc": "",
	} {
		got, ok := auth.Bearer(header)
		if got != want || ok != (want != "") {
			t.Errorf("Bearer(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
}
