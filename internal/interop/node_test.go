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

	"github.com/wsdproject/wsd/internal/wstest"
)

// nodeResult is what node/client.mjs prints.
type nodeResult struct {
	URL        string `json:"url"`
	WSVersion  string `json:"wsVersion"`
	Extensions string `json:"extensions"`
	Protocol   string `json:"protocol"`
	Checks     []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		MS    int    `json:"ms"`
	} `json:"checks"`
	Close *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
		OK     bool   `json:"ok"`
	} `json:"close"`
	Fatal string `json:"fatal"`
}

// nodeTool finds node or npm for the Node.js interop tests: without it they
// fail, unless WSD_SKIP_NODE=1 (see wstest.Tool).
func nodeTool(t *testing.T, name string) string {
	t.Helper()
	return wstest.Tool(t, "WSD_SKIP_NODE",
		"install Node.js and npm (Debian: apt-get install nodejs npm); the tests then run npm ci in internal/interop/node", name)
}

// npmInstall installs node/package-lock.json into node/node_modules unless
// the ws package is already there.
func npmInstall(t *testing.T, npm, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err == nil {
		return
	}
	args := []string{"ci", "--no-audit", "--no-fund"}
	if _, err := os.Stat(filepath.Join(dir, "package-lock.json")); err != nil {
		args = []string{"install", "--no-audit", "--no-fund"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out.String())
	}
	t.Logf("npm %s took %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

func TestNodeWS(t *testing.T) {
	node, dir := setupNode(t)
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", echoURL(d))
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("node stderr:\n%s", stderr.String())
	}

	var res nodeResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		t.Fatalf("node client.mjs: %v; output is not one JSON object (%v):\n%s", runErr, err, stdout.String())
	}
	t.Logf("ws %s, extensions %q, protocol %q", res.WSVersion, res.Extensions, res.Protocol)
	if res.Fatal != "" || runErr != nil {
		t.Errorf("node client.mjs failed: %v: %s", runErr, res.Fatal)
	}

	want := []string{
		"text",
		"binary-64KiB",
		"binary-1MiB",
		"ping-pong",
		"fragmented-text",
		"fragmented-binary",
		"text-after-fragments",
	}
	got := map[string]bool{}
	for _, c := range res.Checks {
		got[c.Name] = true
		if !c.OK {
			t.Errorf("node check %s failed after %d ms: %s", c.Name, c.MS, c.Error)
		}
	}
	for _, name := range want {
		if !got[name] {
			t.Errorf("node check %s did not run", name)
		}
	}
	if len(res.Checks) != len(want) {
		t.Errorf("node ran %d checks, want %d", len(res.Checks), len(want))
	}
	switch {
	case res.Close == nil:
		t.Errorf("node client did not complete the close handshake")
	case res.Close.Code != 4002:
		t.Errorf("node client's close event has code %d (%q), want the 4002 it sent (1006 means no close frame arrived)", res.Close.Code, res.Close.Reason)
	}
	if res.Extensions != "" {
		// The daemon's contract has no permessage-deflate; if it ever
		// negotiates it, the checks above ran compressed.
		t.Logf("note: server negotiated extensions %q", res.Extensions)
	}
}
