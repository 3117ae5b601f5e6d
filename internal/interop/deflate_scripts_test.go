package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsdproject/wsd/internal/wstest"
)

// permessage-deflate with the clients of other languages, Node's ws and
// Python's websockets: a script (node/deflate.mjs, python/deflate.py)
// echoes messages of deflateSizes through a recording Proxy, and the test
// reads the wire as TestDeflateGorilla does.

// scriptResult is what both scripts print.
type scriptResult struct {
	WSVersion  string          `json:"wsVersion"` // node
	Version    string          `json:"version"`   // python
	Header     string          `json:"header"`
	Extensions string          `json:"extensions"` // node: ws.extensions
	Params     json.RawMessage `json:"params"`
	Sent       []sentMsg       `json:"sent"`
	Errors     []string        `json:"errors"`
	Close      *struct {
		Code int `json:"code"`
	} `json:"close"`
	Fatal string `json:"fatal"`
}

// sentMsg is a message a script sent.
type sentMsg struct {
	Size   int  `json:"size"`
	Binary bool `json:"binary"`
}

// runScript runs a client script against the echo daemon started with
// args, through a Proxy, and returns what it printed and the recorded
// connection.
func runScript(t *testing.T, args []string, cmd func(url string) *exec.Cmd) (scriptResult, *Tap) {
	t.Helper()
	d := wstest.StartDaemon(t, append([]string{"-mode", "echo"}, args...)...)
	p := StartProxy(t, d.Addr)
	c := cmd("ws://" + p.Addr + "/")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	runErr := c.Run()
	if stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", filepath.Base(c.Path), stderr.String())
	}
	var res scriptResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		t.Fatalf("%s: %v; output is not one JSON object (%v):\n%s", c, runErr, err, stdout.String())
	}
	if res.Fatal != "" || runErr != nil || len(res.Errors) > 0 {
		t.Fatalf("%s failed: %v: %s %q", filepath.Base(c.Path), runErr, res.Fatal, res.Errors)
	}
	if res.Close == nil || res.Close.Code != 1000 {
		t.Errorf("close %+v, want the close handshake with 1000", res.Close)
	}
	taps := p.Taps()
	if len(taps) != 1 {
		t.Fatalf("%d connections through the proxy, want 1", len(taps))
	}
	return res, taps[0]
}

// checkSent checks that the messages on the wire are the ones the script
// says it sent.
func checkSent(t *testing.T, res scriptResult, ups []WireMessage) {
	t.Helper()
	want := 2 * len(deflateSizes) // a text and a binary message of each size
	for _, n := range deflateSizes {
		if n <= maxRandom {
			want++ // and a random one
		}
	}
	if len(res.Sent) != want || len(ups) != len(res.Sent) {
		t.Fatalf("the script sent %d messages, %d on the wire, want %d", len(res.Sent), len(ups), want)
	}
	for i, s := range res.Sent {
		if len(ups[i].Payload) != s.Size || (ups[i].Op == ws.OpBinary) != s.Binary {
			t.Fatalf("message %d: %d bytes of op %v on the wire, the script sent %+v", i, len(ups[i].Payload), ups[i].Op, s)
		}
	}
}

func TestDeflateNode(t *testing.T) {
	node, dir := setupNode(t)
	t.Parallel()
	sizes, _ := json.Marshal(deflateSizes)
	for _, tc := range []struct {
		name     string
		args     []string
		bits     string // server_max_window_bits to offer
		answer   string
		takeover bool
	}{
		// ws offers "permessage-deflate; client_max_window_bits".
		{"default", nil, "", answerNoTakeover, false},
		{"client-context-takeover", []string{"-compression-client-context-takeover"}, "", answerTakeoverWindow, true},
		{"server-max-window-bits-10", nil, "10", "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			res, tap := runScript(t, tc.args, func(url string) *exec.Cmd {
				c := exec.CommandContext(ctx, node, "deflate.mjs", url, string(sizes), tc.bits)
				c.Dir = dir
				return c
			})
			t.Logf("ws %s: extensions %q, params %s", res.WSVersion, res.Extensions, res.Params)
			checkAnswer(t, res.Header, tc.answer, tap.Down())
			if res.Extensions != "permessage-deflate" {
				t.Errorf("ws.extensions %q, want permessage-deflate", res.Extensions)
			}
			w := EchoWire{
				ClientTakeover: tc.takeover,
				// ws compresses every message with context takeover, and
				// those of 1024 bytes or more without.
				ClientCompresses: func(n int) bool { return tc.takeover || n >= 1024 },
			}
			if tc.bits != "" {
				w.ServerBits = 10
			}
			ups, _ := w.Check(t, tap.Up(), tap.Down())
			checkSent(t, res, ups)
		})
	}
}

// python returns a python3 that has the websockets package, or fails the
// test saying how to install it. Debian's python3-websockets serves
// /usr/bin/python3, which need not be the python3 first on PATH.
func python(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-c", "import websockets").CombinedOutput()
		if err == nil {
			return path
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tried = append(tried, fmt.Sprintf("%s: %s", path, lines[len(lines)-1]))
	}
	if len(tried) == 0 {
		tried = append(tried, "no python3 on PATH")
	}
	t.Fatalf("python3 with the websockets package is needed (%s): apt-get install python3 python3-websockets", strings.Join(tried, "; "))
	return ""
}

func TestDeflatePython(t *testing.T) {
	py := python(t)
	t.Parallel()
	dir, err := filepath.Abs("python")
	if err != nil {
		t.Fatal(err)
	}
	type params struct {
		Name                    string `json:"name"`
		ServerNoContextTakeover bool   `json:"server_no_context_takeover"`
		ClientNoContextTakeover bool   `json:"client_no_context_takeover"`
		ServerMaxWindowBits     int    `json:"server_max_window_bits"`
		ClientMaxWindowBits     int    `json:"client_max_window_bits"`
	}
	for _, tc := range []struct {
		name   string
		args   []string
		offer  string // ClientPerMessageDeflateFactory's arguments; null: the default offer
		answer string
		params params // what the client negotiated
	}{
		// websockets offers "permessage-deflate; client_max_window_bits".
		{"default", nil, "null", answerNoTakeover, params{"permessage-deflate", true, true, 15, 15}},
		{"client-context-takeover", []string{"-compression-client-context-takeover"}, "null", answerTakeoverWindow, params{"permessage-deflate", true, false, 15, 12}},
		{"client-no-context-takeover-offered", []string{"-compression-client-context-takeover"}, `{"client_no_context_takeover":true}`,
			answerNoTakeover, params{"permessage-deflate", true, true, 15, 15}},
		// websockets refuses an answer without server_max_window_bits when
		// it offered one.
		{"server-max-window-bits-10", nil, `{"server_max_window_bits":10}`,
			"permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover", params{"permessage-deflate", true, true, 10, 15}},
		{"server-max-window-bits-8", nil, `{"server_max_window_bits":8}`,
			"permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_no_context_takeover", params{"permessage-deflate", true, true, 8, 15}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			sizes, _ := json.Marshal(deflateSizes)
			config := fmt.Sprintf(`{"sizes":%s,"offer":%s}`, sizes, tc.offer)
			res, tap := runScript(t, tc.args, func(url string) *exec.Cmd {
				c := exec.CommandContext(ctx, py, "deflate.py", url, config)
				c.Dir = dir
				return c
			})
			t.Logf("websockets %s: params %s", res.Version, res.Params)
			checkAnswer(t, res.Header, tc.answer, tap.Down())
			var got []params
			if err := json.Unmarshal(res.Params, &got); err != nil || len(got) != 1 || got[0] != tc.params {
				t.Errorf("the client negotiated %s, want %+v", res.Params, tc.params)
			}
			w := EchoWire{
				ServerBits:       uint8(tc.params.ServerMaxWindowBits),
				ClientTakeover:   !tc.params.ClientNoContextTakeover,
				ClientCompresses: func(int) bool { return true }, // websockets compresses every message
			}
			ups, _ := w.Check(t, tap.Up(), tap.Down())
			checkSent(t, res, ups)
		})
	}
}
