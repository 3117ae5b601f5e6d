package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestNodeAuth: wsd -auth required with Node's ws, for HMAC (checked on
// the event loop) and ECDSA tokens (checked off it, the upgrade deferred):
// a header token upgrades, whoami names alice, a forbidden subscribe gets
// the error ack and the connection stays open; a refused token gets 401
// with the reason before the upgrade; the auth message authenticates, and a
// refused one closes with 4001.
func TestNodeAuth(t *testing.T) {
	node, dir := setupNode(t)
	t.Parallel()
	keys := t.TempDir()
	secret := []byte(strings.Repeat("k", 32))
	esPriv, esPub, err := auth.GenerateKey(auth.AlgES)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg       string
		verifyKey []byte
		signKey   []byte
	}{
		{auth.AlgHS, secret, secret},
		{auth.AlgES, esPub, esPriv},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			keyFile := filepath.Join(keys, tc.alg)
			if err := os.WriteFile(keyFile, tc.verifyKey, 0o600); err != nil {
				t.Fatal(err)
			}
			d := wstest.StartDaemon(t, "-mode", "push", "-auth", "required", "-auth-jwt-key", keyFile, "-auth-jwt-alg", tc.alg)
			good, err := auth.Mint(auth.Config{Alg: tc.alg, Key: tc.signKey}, auth.Claims{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour), Topics: []string{"news.*"}})
			if err != nil {
				t.Fatal(err)
			}
			bad, err := auth.Mint(auth.Config{Alg: tc.alg, Key: tc.signKey}, auth.Claims{Subject: "alice", ExpiresAt: time.Now().Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "auth.mjs", echoURL(d))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "TOKEN="+good, "BAD="+bad)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			runErr := cmd.Run()
			var res struct {
				Cases []struct {
					Name  string          `json:"name"`
					OK    bool            `json:"ok"`
					Got   json.RawMessage `json:"got"`
					Error string          `json:"error"`
				} `json:"cases"`
				Fatal string `json:"fatal"`
			}
			if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil || res.Fatal != "" || runErr != nil {
				t.Fatalf("node auth.mjs: %v %v %s\n%s\n%s", runErr, err, res.Fatal, stdout.String(), stderr.String())
			}
			want := map[string][]string{
				"header":      {`"op":"whoami"`, `"user":"alice"`, `"code":"forbidden"`, `"topic":"billing"`, `{"op":"subscribed","topic":"user.alice"}`, `"code":1000`},
				"header-bad":  {`"status":401`, `token expired`},
				"message":     {`"op":"authenticated"`, `"user":"alice"`},
				"message-bad": {`"code":4001`, `token expired`},
			}
			if len(res.Cases) != len(want) {
				t.Fatalf("%d cases ran, want %d: %s", len(res.Cases), len(want), stdout.String())
			}
			for _, c := range res.Cases {
				if !c.OK {
					t.Errorf("%s: %s", c.Name, c.Error)
					continue
				}
				for _, w := range want[c.Name] {
					if !strings.Contains(string(c.Got), w) {
						t.Errorf("%s: got %s, want %s in it", c.Name, c.Got, w)
					}
				}
				if strings.Contains(string(c.Got), good) || strings.Contains(string(c.Got), bad) {
					t.Errorf("%s: a token was repeated to the client: %s", c.Name, c.Got)
				}
			}
		})
	}
}
