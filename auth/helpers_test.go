package auth_test

import (
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsdproject/wsd/auth"
)

// testNow is the time tokens are checked at.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// keyPair is a key of one family: private (or the secret) for Mint, public
// for NewJWT.
type keyPair struct{ private, public []byte }

// testKeys makes one key pair of each family, and a second ("other") of
// each, once per test binary: RSA keys take a while.
var testKeys = sync.OnceValue(func() map[string]keyPair {
	m := map[string]keyPair{}
	for _, alg := range []string{auth.AlgHS, auth.AlgRS, auth.AlgES, auth.AlgEdDSA} {
		for _, name := range []string{alg, "other " + alg} {
			priv, pub, err := auth.GenerateKey(alg)
			if err != nil {
				panic(err)
			}
			m[name] = keyPair{priv, pub}
		}
	}
	return m
})

// verifier returns a JWT for the family alg with cfg's other settings.
func verifier(t testing.TB, alg string, cfg auth.Config) *auth.JWT {
	t.Helper()
	cfg.Alg, cfg.Key = alg, testKeys()[alg].public
	j, err := auth.NewJWT(cfg)
	if err != nil {
		t.Fatalf("NewJWT(%s): %v", alg, err)
	}
	return j
}

// signRaw signs claims with golang-jwt directly, for tokens Mint refuses
// to make. key is an HMAC secret (whatever it holds) or a PEM private key.
func signRaw(t testing.TB, method jwt.SigningMethod, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	var k any = key // an HMAC secret, even when it is a PEM key
	if _, hmac := method.(*jwt.SigningMethodHMAC); !hmac && len(key) > 0 {
		block, _ := pem.Decode(key)
		var err error
		if k, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			t.Fatal(err)
		}
	}
	if method == jwt.SigningMethodNone {
		k = jwt.UnsafeAllowNoneSignatureType
	}
	s, err := jwt.NewWithClaims(method, claims).SignedString(k)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// validClaims are the claims of a good token at testNow, as a map that
// cases change.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":     "alice",
		"exp":     testNow.Add(time.Hour).Unix(),
		"iat":     testNow.Add(-time.Minute).Unix(),
		"topics":  []string{"news.*", "chat.{sub}"},
		"publish": []string{"chat.{sub}"},
		"info":    map[string]any{"name": "Alice"},
	}
}

// with returns validClaims changed by kv pairs; a nil value deletes.
func with(kv ...any) jwt.MapClaims {
	c := validClaims()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}
