package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
)

// wss:// with the clients of other languages: Node's ws and Python's
// websockets echo text and binary messages of wssSizes through an
// in-process engine that serves TLS with a certificate of a test CA, which
// the client is told to trust, and close with 1000.

// wssSizes go from 16 bytes to 1 MiB, across the frame header's length
// forms and TLS records of 16 KiB.
var wssSizes = []int{16, 125, 126, 1000, 16 << 10, 16<<10 + 1, 65535, 65536, 300_000, 1 << 20}

// wssResult is what node/wss.mjs and python/wss.py print.
type wssResult struct {
	WSVersion  string   `json:"wsVersion"` // node
	Version    string   `json:"version"`   // python
	TLSVersion string   `json:"tlsVersion"`
	Extensions string   `json:"extensions"` // node
	Sent       int      `json:"sent"`
	Errors     []string `json:"errors"`
	Close      *struct {
		Code int `json:"code"`
	} `json:"close"`
	Fatal string `json:"fatal"`
}

// runWSSScript runs a script made by cmd and checks that it echoed every
// message and closed with 1000.
func runWSSScript(t *testing.T, c *exec.Cmd) wssResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	runErr := c.Run()
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", filepath.Base(c.Path), stderr.String())
	}
	var res wssResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		t.Fatalf("%s: %v; output is not one JSON object (%v):\n%s", c, runErr, err, stdout.String())
	}
	if res.Fatal != "" || runErr != nil || len(res.Errors) > 0 {
		t.Fatalf("%s failed: %v: %s %q", filepath.Base(c.Path), runErr, res.Fatal, res.Errors)
	}
	if want := 2 * len(wssSizes); res.Sent != want {
		t.Errorf("the script echoed %d messages, want %d", res.Sent, want)
	}
	if res.Close == nil || res.Close.Code != 1000 {
		t.Errorf("close %+v, want the close handshake with 1000", res.Close)
	}
	return res
}

// checkServerSaw checks the one connection the engine opened.
func checkServerSaw(t *testing.T, w *WSSEcho, version uint16, compression bool) {
	t.Helper()
	conns := w.Conns()
	if len(conns) != 1 {
		t.Fatalf("the engine opened %d connections, want 1", len(conns))
	}
	if c := conns[0]; c.TLSVersion != version || c.Compression != compression {
		t.Errorf("the engine saw %s with permessage-deflate %v, want %s and %v",
			tls.VersionName(c.TLSVersion), c.Compression, tls.VersionName(version), compression)
	}
}

func TestWSSNode(t *testing.T) {
	node, dir := setupNode(t)
	t.Parallel()
	sizes, _ := json.Marshal(wssSizes)
	for _, tc := range []struct {
		name    string
		deflate string
		ext     string
	}{
		{"plain", "off", ""},
		{"permessage-deflate", "on", "permessage-deflate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := StartWSSEcho(t, engine.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c := exec.CommandContext(ctx, node, "wss.mjs", "wss://"+w.Addr+"/", w.CAFile, tc.deflate, string(sizes))
			c.Dir = dir
			res := runWSSScript(t, c)
			t.Logf("ws %s over %s: extensions %q", res.WSVersion, res.TLSVersion, res.Extensions)
			if res.Extensions != tc.ext {
				t.Errorf("ws.extensions %q, want %q", res.Extensions, tc.ext)
			}
			if res.TLSVersion != "TLSv1.3" {
				t.Errorf("TLS version %q, want TLSv1.3", res.TLSVersion)
			}
			checkServerSaw(t, w, tls.VersionTLS13, tc.deflate == "on")
		})
	}
}

func TestWSSPython(t *testing.T) {
	py := python(t)
	t.Parallel()
	dir, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	sizes, _ := json.Marshal(wssSizes)
	for _, tc := range []struct {
		max     string // the client's maximum_version
		name    string // what ssl reports
		version uint16
	}{
		{"1.3", "TLSv1.3", tls.VersionTLS13},
		{"1.2", "TLSv1.2", tls.VersionTLS12},
	} {
		t.Run("TLS"+tc.max, func(t *testing.T) {
			t.Parallel()
			w := StartWSSEcho(t, engine.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c := exec.CommandContext(ctx, py, "wss.py", "wss://"+w.Addr+"/", w.CAFile, tc.max, string(sizes))
			c.Dir = dir
			res := runWSSScript(t, c)
			t.Logf("websockets %s over %s", res.Version, res.TLSVersion)
			if res.TLSVersion != tc.name {
				t.Errorf("TLS version %q, want %s", res.TLSVersion, tc.name)
			}
			// websockets offers permessage-deflate.
			checkServerSaw(t, w, tc.version, true)
		})
	}
}
