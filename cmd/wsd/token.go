package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wsdproject/wsd/auth"
)

// runToken is "wsd token": it mints a connection token with auth.Mint and
// prints it, for tests, demos and scripts. A real deployment mints tokens
// in its application server, with the same claims.
func runToken(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsd token", flag.ContinueOnError)
	var usage strings.Builder
	fs.SetOutput(&usage)
	var (
		key      = fs.String("key", "", "key file: the HMAC secret (-alg HS, at least 32 bytes) or a PEM private key (RS, ES, EdDSA); required")
		alg      = fs.String("alg", auth.AlgHS, "algorithm family: HS, RS, ES or EdDSA")
		sub      = fs.String("sub", "", `user id, "sub"; required`)
		ttl      = fs.Duration("ttl", time.Hour, `lifetime: "exp" is now plus ttl`)
		topics   = fs.String("topics", "", `topic patterns the user may subscribe to, comma-separated ("news.*", "team.{sub}.*")`)
		publish  = fs.String("publish", "", "topic patterns the user may publish to, comma-separated")
		info     = fs.String("info", "", `"info", a JSON object shown in presence`)
		issuer   = fs.String("issuer", "", `"iss"`)
		audience = fs.String("audience", "", `"aud"`)
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, "Usage: wsd token -key FILE -sub USER [flags]\n\nPrints a connection token for wsd -auth.\n\n")
			fs.SetOutput(out)
			fs.PrintDefaults()
			return err
		}
		return &configError{fmt.Errorf("token: %w", err)}
	}
	if fs.NArg() > 0 {
		return &configError{fmt.Errorf("token: unexpected argument %q", fs.Arg(0))}
	}
	if *key == "" || *sub == "" {
		return &configError{errors.New("token: -key and -sub are required (see wsd token -h)")}
	}
	if *ttl <= 0 {
		return &configError{fmt.Errorf("token: -ttl %v: want a positive duration", *ttl)}
	}
	c := auth.Claims{Subject: *sub, ExpiresAt: time.Now().Add(*ttl), IssuedAt: time.Now(), Topics: splitList(*topics), Publish: splitList(*publish), Issuer: *issuer}
	if *audience != "" {
		c.Audience = []string{*audience}
	}
	if *info != "" {
		c.Info = json.RawMessage(*info)
	}
	tok, err := auth.Mint(auth.Config{Alg: *alg, KeyFile: *key}, c)
	if err != nil {
		return &configError{fmt.Errorf("token: %w", err)}
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
