package auth

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the contents of a token to Mint.
type Claims struct {
	// Subject is the user id, "sub". Required.
	Subject string
	// Issuer is "iss"; empty means Config.Issuer.
	Issuer string
	// Audience is "aud"; empty means Config.Audience, if set.
	Audience []string
	// ExpiresAt is "exp". Required: NewJWT refuses tokens without one.
	ExpiresAt time.Time
	// NotBefore is "nbf" and IssuedAt "iat"; zero leaves them out.
	NotBefore, IssuedAt time.Time
	// ID is "jti"; empty leaves it out.
	ID string
	// Topics ("topics") and Publish ("publish") are the patterns the user
	// may subscribe and publish to.
	Topics, Publish []string
	// Info is "info", a JSON object, or nil.
	Info json.RawMessage
}

// Mint signs a token with cfg's key: the HMAC secret for AlgHS (HS256),
// the PEM private key for the others (RS256, ES256/ES384/ES512 by the
// key's curve, EdDSA). It refuses claims that Verify would refuse whatever
// the time: no subject or expiry, a bad user id or pattern, an info that is
// not a JSON object or is larger than MaxInfoBytes.
func Mint(cfg Config, c Claims) (string, error) {
	cfg = cfg.withDefaults()
	if err := c.check(&cfg); err != nil {
		return "", err
	}
	b, err := cfg.keyBytes()
	if err != nil {
		return "", err
	}
	var method jwt.SigningMethod
	var key any
	switch cfg.Alg {
	case AlgHS:
		if err := checkSecret(b); err != nil {
			return "", err
		}
		method, key = jwt.SigningMethodHS256, b
	case AlgRS, AlgES, AlgEdDSA:
		var signer crypto.Signer
		if signer, err = parsePrivateKey(cfg.Alg, b); err != nil {
			return "", err
		}
		key = signer
		switch cfg.Alg {
		case AlgRS:
			method = jwt.SigningMethodRS256
		case AlgES:
			method = jwt.GetSigningMethod(esMethod(signer.Public().(*ecdsa.PublicKey)))
		default:
			method = jwt.SigningMethodEdDSA
		}
	default:
		return "", unknownAlg(cfg.Alg)
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			Issuer:    c.Issuer,
			Audience:  c.Audience,
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
			NotBefore: numericDate(c.NotBefore),
			IssuedAt:  numericDate(c.IssuedAt),
			ID:        c.ID,
		},
		Topics:  c.Topics,
		Publish: c.Publish,
		Info:    c.Info,
	}
	if tc.Issuer == "" {
		tc.Issuer = cfg.Issuer
	}
	if len(tc.Audience) == 0 && cfg.Audience != "" {
		tc.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	s, err := jwt.NewWithClaims(method, tc).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}

// check refuses claims Verify would refuse at any time.
func (c *Claims) check(cfg *Config) error {
	if why := checkSub(c.Subject); why != "" {
		return fmt.Errorf("auth: subject %s: %s", quoteShort(c.Subject), why)
	}
	if c.ExpiresAt.IsZero() {
		return errors.New("auth: ExpiresAt is required")
	}
	if _, err := compilePatterns(c.Topics); err != nil {
		return fmt.Errorf("auth: topics: %w", err)
	}
	if _, err := compilePatterns(c.Publish); err != nil {
		return fmt.Errorf("auth: publish: %w", err)
	}
	if _, err := checkInfo(c.Info, cfg.MaxInfoBytes); err != nil {
		return errors.New("auth: Info: " + err.(*Error).Reason)
	}
	return nil
}

// numericDate is t as a JWT date, nil for the zero time.
func numericDate(t time.Time) *jwt.NumericDate {
	if t.IsZero() {
		return nil
	}
	return jwt.NewNumericDate(t)
}
