package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"time"

	"github.com/wsdproject/wsd/auth"
)

// authConfig is the client authentication settings (-auth and -auth-*).
type authConfig struct {
	Mode          string // off, optional, required
	JWTKey        string
	JWTAlg        string
	JWTIssuer     string
	JWTAudience   string
	BasicFile     string
	Timeout       time.Duration
	RefreshGrace  time.Duration
	MaxTokenBytes int64
	AnonTopics    string
	AnonPublish   string
	BasicTopics   string
	BasicPublish  string
	CheckWorkers  int
	jwt           *auth.JWT      // built by checkAuth
	basic         *auth.Htpasswd // built by checkAuth
	anonymous     *auth.Identity // built by checkAuth for -auth optional
	jwtOnLoop     bool           // HS tokens are checked on the event loop (about 10 µs)
}

// addAuthFlags adds the authentication flags to fs, bound to c.Auth.
func addAuthFlags(fs *flag.FlagSet, c *config) {
	a := &c.Auth
	text := func(p *string, name, def string, list bool, check func(string) *valueError, usage string) {
		*p = def
		fs.Var(&textValue{p: p, list: list, check: check}, name, usage)
	}
	duration := func(p *time.Duration, name string, def time.Duration, usage string) {
		*p = def
		fs.Var(&durationValue{p}, name, usage)
	}
	text(&a.Mode, "auth", "off", false, oneOf("auth mode", "off", "optional", "required"),
		"client authentication: off, optional (clients without credentials are anonymous) or required; see README Authentication")
	text(&a.JWTKey, "auth-jwt-key", "", false, nil, "JWT key file: the HMAC secret (-auth-jwt-alg HS, at least 32 bytes) or a PEM public key (RS, ES, EdDSA)")
	text(&a.JWTAlg, "auth-jwt-alg", "", false, oneOf("JWT algorithm family", "", auth.AlgHS, auth.AlgRS, auth.AlgES, auth.AlgEdDSA),
		"algorithm family of the tokens: HS, RS, ES or EdDSA; a token signed with another, or none, is refused")
	text(&a.JWTIssuer, "auth-jwt-issuer", "", false, nil, `required "iss" of tokens (empty: not checked)`)
	text(&a.JWTAudience, "auth-jwt-audience", "", false, nil, `required "aud" of tokens (empty: not checked)`)
	text(&a.BasicFile, "auth-basic-file", "", false, nil, "htpasswd file of bcrypt hashes (htpasswd -B) for HTTP basic auth; the user name is the user id")
	duration(&a.Timeout, "auth-timeout", 5*time.Second, `time a client connected without credentials has to send {"op":"auth","token":...} (-auth required)`)
	duration(&a.RefreshGrace, "auth-refresh-grace", 30*time.Second, `time a client has after {"op":"expired"} to send {"op":"refresh","token":...} before it is closed with 4003`)
	a.MaxTokenBytes = auth.DefaultMaxTokenBytes
	fs.Var(&sizeValue{p: &a.MaxTokenBytes, min: 256, max: math.MaxInt32}, "auth-max-token-bytes", "longest token accepted (longer: 401 or close 4001)")
	text(&a.AnonTopics, "auth-anonymous-topics", "", true, nil, "-auth optional: topic patterns anonymous clients may subscribe to, comma-separated")
	text(&a.AnonPublish, "auth-anonymous-publish", "", true, nil, "-auth optional: topic patterns anonymous clients may publish to")
	text(&a.BasicTopics, "auth-basic-topics", "", true, nil, `topic patterns basic-auth users may subscribe to ("{sub}" is the user name); user.<name> always`)
	text(&a.BasicPublish, "auth-basic-publish", "", true, nil, "topic patterns basic-auth users may publish to")
	a.CheckWorkers = 0
	fs.Var(&intValue{p: &a.CheckWorkers, kind: "count", want: "want 0 (half the CPUs) or more", ok: func(n int) bool { return n >= 0 }},
		"auth-check-workers", "goroutines running slow checks (bcrypt, RS/ES/EdDSA signatures) off the event loops (0: half the CPUs)")
}

// on reports whether clients are authenticated at all.
func (a *authConfig) on() bool { return a.Mode == "optional" || a.Mode == "required" }

// checkAuth checks the authentication settings together and loads the
// keys and the htpasswd file, so that a mistake stops wsd before it
// starts.
func (c *config) checkAuth() []error {
	a := &c.Auth
	var errs []error
	if !a.on() {
		for name, v := range map[string]string{"auth-jwt-key": a.JWTKey, "auth-basic-file": a.BasicFile} {
			if v != "" {
				errs = append(errs, fmt.Errorf("%s needs -auth optional or required (-auth is off)", c.describe(name, v)))
			}
		}
		return errs
	}
	if a.JWTKey == "" && a.BasicFile == "" {
		errs = append(errs, fmt.Errorf("%s needs -auth-jwt-key or -auth-basic-file: there is nothing to check credentials against", c.describe("auth", a.Mode)))
	}
	if a.JWTKey != "" {
		if a.JWTAlg == "" {
			errs = append(errs, fmt.Errorf("%s needs -auth-jwt-alg (HS, RS, ES or EdDSA): the algorithm is pinned, never taken from the token", c.describe("auth-jwt-key", a.JWTKey)))
		} else {
			j, err := auth.NewJWT(a.jwtConfig())
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.describe("auth-jwt-key", a.JWTKey), err))
			}
			a.jwt, a.jwtOnLoop = j, a.JWTAlg == auth.AlgHS
		}
	}
	if a.BasicFile != "" {
		h, err := auth.LoadHtpasswd(a.BasicFile, auth.BasicOptions{Permissions: auth.Permissions{Subscribe: splitList(a.BasicTopics), Publish: splitList(a.BasicPublish)}})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.describe("auth-basic-file", a.BasicFile), err))
		}
		a.basic = h
	}
	if a.Mode == "optional" {
		id, err := auth.Anonymous(auth.Permissions{Subscribe: splitList(a.AnonTopics), Publish: splitList(a.AnonPublish)})
		if err != nil {
			errs = append(errs, fmt.Errorf("-auth-anonymous-topics/-auth-anonymous-publish: %w", err))
		}
		a.anonymous = id
	}
	if a.Timeout <= 0 {
		errs = append(errs, errors.New("-auth-timeout must be positive: a client without credentials must authenticate in bounded time"))
	}
	if c.ClientPublish != "" {
		errs = append(errs, fmt.Errorf("%s: with -auth what a client may publish to comes from its token's \"publish\", -auth-basic-publish or -auth-anonymous-publish", c.describe("client-publish", c.ClientPublish)))
	}
	if c.Mode == "echo" {
		errs = append(errs, fmt.Errorf("%s: echo mode has no topics to guard; use chat or push", c.describe("auth", a.Mode)))
	}
	return errs
}

// jwtConfig is the auth.Config of the JWT flags.
func (a *authConfig) jwtConfig() auth.Config {
	return auth.Config{Alg: a.JWTAlg, KeyFile: a.JWTKey, Issuer: a.JWTIssuer, Audience: a.JWTAudience, MaxTokenBytes: int(a.MaxTokenBytes)}
}
