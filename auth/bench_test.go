package auth_test

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsdproject/wsd/auth"
	"golang.org/x/crypto/bcrypt"
)

// BenchmarkVerify measures Verify of a typical token, signature included,
// for each family.
func BenchmarkVerify(b *testing.B) {
	keys := testKeys()
	for _, c := range []struct {
		alg    string
		method jwt.SigningMethod
	}{
		{auth.AlgHS, jwt.SigningMethodHS256},
		{auth.AlgES, jwt.SigningMethodES256},
		{auth.AlgRS, jwt.SigningMethodRS256},
		{auth.AlgEdDSA, jwt.SigningMethodEdDSA},
	} {
		b.Run("alg="+c.method.Alg(), func(b *testing.B) {
			j := verifier(b, c.alg, auth.Config{})
			token := signRaw(b, c.method, keys[c.alg].private, validClaims())
			b.ReportAllocs()
			b.SetBytes(int64(len(token)))
			reportCPU(b, func() {
				if _, err := j.Verify(token, testNow); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkVerifyRefused measures the refusals that cost no signature: a
// token of a forbidden algorithm and an oversized one.
func BenchmarkVerifyRefused(b *testing.B) {
	j := verifier(b, auth.AlgES, auth.Config{})
	for name, token := range map[string]string{
		"alg=none":  signRaw(b, jwt.SigningMethodNone, nil, validClaims()),
		"oversized": string(make([]byte, 5000)),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			reportCPU(b, func() {
				if _, err := j.Verify(token, testNow); err == nil {
					b.Fatal("accepted")
				}
			})
		})
	}
}

// BenchmarkBasic measures a basic-auth check: bcrypt at costs 10 (the
// default of htpasswd -B is 5; 10 is bcrypt's) and 12, and a cache hit.
func BenchmarkBasic(b *testing.B) {
	header := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:builder"))
	for _, cost := range []int{bcrypt.DefaultCost, 12} {
		b.Run(fmt.Sprintf("bcrypt/cost=%d", cost), func(b *testing.B) {
			hash, _ := bcrypt.GenerateFromPassword([]byte("builder"), cost)
			h, err := auth.ParseHtpasswd([]byte("bob:"+string(hash)), auth.BasicOptions{CacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			reportCPU(b, func() {
				if _, err := h.CheckBasic(header); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("cached", func(b *testing.B) {
		hash, _ := bcrypt.GenerateFromPassword([]byte("builder"), bcrypt.MinCost)
		h, err := auth.ParseHtpasswd([]byte("bob:"+string(hash)), auth.BasicOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.CheckBasic(header); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		reportCPU(b, func() {
			if _, ok := h.Cached(header); !ok {
				b.Fatal("not cached")
			}
		})
	})
}

// BenchmarkCanSubscribe measures a permission check against a few
// patterns.
func BenchmarkCanSubscribe(b *testing.B) {
	id, err := verifier(b, auth.AlgHS, auth.Config{}).Verify(signRaw(b, jwt.SigningMethodHS256, testKeys()[auth.AlgHS].private,
		with("topics", []string{"a", "b.*", "c.{sub}.*", "news.*"})), testNow)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	reportCPU(b, func() {
		if !id.CanSubscribe("news.eu.fr") {
			b.Fatal("refused")
		}
	})
}
