package auth

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of Config.
const (
	DefaultLeeway        = 30 * time.Second
	DefaultMaxTokenBytes = 4 << 10
	DefaultMaxInfoBytes  = 1 << 10
)

// Config configures JWT verification (NewJWT) and minting (Mint).
type Config struct {
	// Alg is the algorithm family: AlgHS, AlgRS, AlgES or AlgEdDSA.
	// Required. Tokens that name an algorithm of another family, or
	// "none", are refused.
	Alg string
	// Key is the HMAC secret (at least MinSecretBytes) for AlgHS, and a PEM
	// key for the others: the public key (or a certificate) for NewJWT,
	// the private key for Mint.
	Key []byte
	// KeyFile is read for the key when Key is empty. Trailing line breaks
	// of a secret file are not part of the secret.
	KeyFile string
	// Issuer, when set, must be the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew allowed on "exp", "nbf" and "iat".
	// 0 means DefaultLeeway (30 s); negative means none.
	Leeway time.Duration
	// MaxTokenBytes is the longest token: a longer one is refused before it
	// is decoded. 0 means DefaultMaxTokenBytes (4 KiB); negative, no limit.
	MaxTokenBytes int
	// MaxInfoBytes is the largest "info" claim. 0 means
	// DefaultMaxInfoBytes (1 KiB); negative, no limit.
	MaxInfoBytes int
}

// withDefaults returns c with its zero fields set to their defaults and
// negative ones to "off".
func (c Config) withDefaults() Config {
	switch {
	case c.Leeway == 0:
		c.Leeway = DefaultLeeway
	case c.Leeway < 0:
		c.Leeway = 0
	}
	c.MaxTokenBytes = orDefault(c.MaxTokenBytes, DefaultMaxTokenBytes)
	c.MaxInfoBytes = orDefault(c.MaxInfoBytes, DefaultMaxInfoBytes)
	return c
}

// orDefault returns def for 0, -1 (no limit) for a negative n, n otherwise.
func orDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return -1
	}
	return n
}

// JWT verifies connection tokens. It is safe for concurrent use.
type JWT struct {
	cfg     Config
	key     any // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	methods []string
	opts    []jwt.ParserOption
}

// NewJWT checks cfg and loads its key. It refuses an unknown family, a key
// of another family, a private key, an HMAC secret shorter than
// MinSecretBytes or that is a PEM key, and an RSA key under 2048 bits.
func NewJWT(cfg Config) (*JWT, error) {
	cfg = cfg.withDefaults()
	b, err := cfg.keyBytes()
	if err != nil {
		return nil, err
	}
	j := &JWT{cfg: cfg}
	switch cfg.Alg {
	case AlgHS:
		if err := checkSecret(b); err != nil {
			return nil, err
		}
		j.key = slices.Clone(b)
		j.methods = []string{"HS256"}
		if len(b) >= 48 {
			j.methods = append(j.methods, "HS384")
		}
		if len(b) >= 64 {
			j.methods = append(j.methods, "HS512")
		}
	case AlgRS, AlgES, AlgEdDSA:
		var pub crypto.PublicKey
		if pub, err = parsePublicKey(cfg.Alg, b); err != nil {
			return nil, err
		}
		j.key = pub
		switch cfg.Alg {
		case AlgRS:
			j.methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		case AlgES:
			j.methods = []string{esMethod(pub.(*ecdsa.PublicKey))}
		default:
			j.methods = []string{"EdDSA"}
		}
	default:
		return nil, unknownAlg(cfg.Alg)
	}
	j.opts = []jwt.ParserOption{
		jwt.WithValidMethods(j.methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		j.opts = append(j.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		j.opts = append(j.opts, jwt.WithAudience(cfg.Audience))
	}
	return j, nil
}

// Methods returns the algorithms ("HS256", "ES256"...) tokens may name.
func (j *JWT) Methods() []string { return slices.Clone(j.methods) }

// tokenClaims are the claims wsd reads from a token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Topics  []string        `json:"topics,omitempty"`
	Publish []string        `json:"publish,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
}

// Verify checks token at the time now and returns who it identifies.
//
// The token must be at most MaxTokenBytes, name an algorithm of the
// configured family, be signed by the key, have an "exp" that has not
// passed, no "nbf" or "iat" in the future (all give or take Leeway), the
// configured "iss" and "aud" if any, a "sub" that is a valid user id (a
// token with no "sub" is refused: anonymous clients carry no token), valid
// "topics" and "publish" patterns, and an "info" that is a JSON object of
// at most MaxInfoBytes. Otherwise the error is one of the 401 *Error
// values: ErrTokenTooLong, ErrMalformed, ErrAlgorithm, ErrBadSignature,
// ErrExpired, ErrNotYetValid, ErrIssuedInFuture, ErrNoExpiry,
// ErrWrongIssuer, ErrWrongAudience, ErrNoSubject, ErrBadSubject,
// ErrBadPattern, ErrInfoTooLarge, ErrBadInfo. The checks of the claims come
// after the signature's: a reason other than the first four is only ever
// given to the holder of a token the key signed.
//
// Verify is safe for concurrent use. Its cost depends on the family (see
// the package doc): HS is cheap enough for an event loop, the others are
// not.
func (j *JWT) Verify(token string, now time.Time) (*Identity, error) {
	if j.cfg.MaxTokenBytes >= 0 && len(token) > j.cfg.MaxTokenBytes {
		return nil, ErrTokenTooLong
	}
	var c tokenClaims
	p := jwt.NewParser(append(j.opts[:len(j.opts):len(j.opts)], jwt.WithTimeFunc(func() time.Time { return now }))...)
	t, err := p.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) { return j.key, nil })
	if err != nil {
		return nil, j.tokenError(err, t, &c)
	}
	return j.identity(&c)
}

// tokenError maps a parse error of golang-jwt to one of ours. The parser
// reports an algorithm outside the allowed set as a bad signature, so the
// algorithm is checked here first.
func (j *JWT) tokenError(err error, t *jwt.Token, c *tokenClaims) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case t == nil || t.Method == nil || !slices.Contains(j.methods, t.Method.Alg()):
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrIssuedInFuture
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ErrWrongAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.ExpiresAt == nil:
			return ErrNoExpiry
		case j.cfg.Issuer != "" && c.Issuer == "":
			return ErrWrongIssuer
		default:
			return ErrWrongAudience
		}
	}
	return ErrMalformed
}

// identity checks the claims that are wsd's and makes the Identity.
func (j *JWT) identity(c *tokenClaims) (*Identity, error) {
	if c.Subject == "" {
		return nil, ErrNoSubject
	}
	if checkSub(c.Subject) != "" {
		return nil, ErrBadSubject
	}
	info, err := checkInfo(c.Info, j.cfg.MaxInfoBytes)
	if err != nil {
		return nil, err
	}
	id := &Identity{Sub: c.Subject, Expires: c.ExpiresAt.Time, Info: info}
	if id.subscribe, err = compilePatterns(c.Topics); err != nil {
		return nil, ErrBadPattern
	}
	if id.publish, err = compilePatterns(c.Publish); err != nil {
		return nil, ErrBadPattern
	}
	return id, nil
}

// checkInfo returns info if it is a JSON object of at most max bytes (max
// negative: any size), nil for no info or null.
func checkInfo(info json.RawMessage, max int) (json.RawMessage, error) {
	if len(info) == 0 || string(info) == "null" {
		return nil, nil
	}
	if max >= 0 && len(info) > max {
		return nil, ErrInfoTooLarge
	}
	if info[0] != '{' || !json.Valid(info) {
		return nil, ErrBadInfo
	}
	return info, nil
}

// Bearer returns the token of an Authorization header value "Bearer
// <token>" (RFC 6750 §2.1; the scheme is case-insensitive), and false for
// any other value.
func Bearer(header string) (token string, ok bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	token = strings.TrimLeft(header[len(scheme):], " ")
	return token, token != ""
}
