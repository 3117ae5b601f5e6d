package engine_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestUpgradeDeferTLS: a deferred upgrade over wss holds the decrypted
// request and the frame pipelined after it until the answer; an Accept
// upgrades and echoes the frame with the Accept's Context, a Reject is
// written encrypted and ends the connection.
func TestUpgradeDeferTLS(t *testing.T) {
	hook, ch := deferAll(2)
	_, addr, pki := startWSS(t, &deferEcho{}, engine.Options{OnUpgrade: hook})
	for _, accept := range []bool{true, false} {
		c := dialTLS(t, addr, clientTLS(pki, 0))
		key := wstest.NewKey()
		req := wstest.BuildRequest("GET", "/", wstest.WithHeader(wstest.UpgradeHeaders("localhost", key), "X-Token", "tls"))
		c.write(append(req, wstest.Text("early").Bytes()...))
		d := next(t, ch)
		if accept {
			go d.p.Accept("wss")
		} else {
			go d.p.Reject(&engine.Response{Status: http.StatusUnauthorized, Body: []byte("no\n")})
		}
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !accept {
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized || string(body) != "no\n" {
				t.Fatalf("reject over TLS: %q %q", resp.Status, body)
			}
			c.expectEOF()
			continue
		}
		if err := wstest.CheckUpgradeResponse(resp, key); err != nil {
			t.Fatal(err)
		}
		c.expect(wstest.OpText, []byte("wss:early"))
		c.closeHandshake()
	}
}
