package browser

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// waitLimit bounds every wait of the chat test.
const waitLimit = 30 * time.Second

// TestBrowserChat drives the demo page served by "wsd -mode chat" in two
// headless Chromium processes: what one user types must show up in the other
// one's message list, and both must see "2 online".
func TestBrowserChat(t *testing.T) {
	browser := chromium(t)
	d := wstest.StartDaemon(t, "-mode", "chat")
	pageURL := "http://" + d.Addr + "/#lobby-test"

	alice := openPage(t, browser, pageURL, "alice")
	bob := openPage(t, browser, pageURL, "bob")

	for _, p := range []*chatPage{alice, bob} {
		p.waitFor(t, "the page to connect", `document.getElementById("status").dataset.state === "connected"`)
		if room := p.evalString(t, `document.getElementById("room").value`); room != "lobby-test" {
			t.Fatalf("%s: room field is %q, want lobby-test (from the URL hash)", p.name, room)
		}
		// Set the nickname the way a user does: type it, click Join.
		p.setValue(t, "#nick", p.name)
		p.click(t, "#join")
		p.waitFor(t, "the page to be connected after Join", `document.getElementById("status").dataset.state === "connected"`)
	}
	for _, p := range []*chatPage{alice, bob} {
		p.waitFor(t, `"2 online"`, `document.getElementById("online").textContent.trim() === "2 online"`)
	}

	// Alice types and clicks Send; the text carries markup that must stay text.
	fromAlice := `hello bob <img src=x onerror="window.__xss=1"> <b>bold?</b>`
	alice.typeInto(t, "#input", fromAlice)
	alice.click(t, "#send")
	bob.waitMessage(t, "alice", fromAlice)
	alice.waitMessage(t, "alice", fromAlice)

	// Bob types and presses Enter.
	fromBob := "hi alice — ünïcødé ✓"
	bob.typeInto(t, "#input", fromBob)
	bob.pressEnter(t)
	alice.waitMessage(t, "bob", fromBob)
	bob.waitMessage(t, "bob", fromBob)

	// Other clients may send anything to the room: the pages ignore it.
	junk(t, d.Addr, "/chat/lobby-test")
	for _, p := range []*chatPage{alice, bob} {
		p.waitMessage(t, "anonymous", "odd time") // blank nick, out-of-range ts
	}
	for _, p := range []*chatPage{alice, bob} {
		p.waitFor(t, `"2 online" after the raw client left`, `document.getElementById("online").textContent.trim() === "2 online"`)
	}
	fromAlice2 := "still there?"
	alice.typeInto(t, "#input", fromAlice2)
	alice.pressEnter(t)
	bob.waitMessage(t, "alice", fromAlice2)

	for _, p := range []*chatPage{alice, bob} {
		// Each page shows its own messages as its own, once (the relayed copy
		// of an own message is not shown again), and nothing else.
		var got struct {
			Own, Other, Messages int
			XSS                  bool
			Markup               int
		}
		p.evalJSON(t, `(() => {
			const ms = [...document.querySelectorAll("#messages .message")];
			return {
				Own: ms.filter(m => m.classList.contains("own") && m.dataset.nick === `+strconv.Quote(p.name)+`).length,
				Other: ms.filter(m => !m.classList.contains("own") && m.dataset.nick !== `+strconv.Quote(p.name)+`).length,
				Messages: ms.length,
				XSS: window.__xss !== undefined,
				Markup: document.querySelectorAll("#messages .text *").length,
			};
		})()`, &got)
		wantOwn := map[string]int{"alice": 2, "bob": 1}[p.name]
		if got.Own != wantOwn || got.Own+got.Other != got.Messages || got.Messages != 4 {
			t.Errorf("%s: %d own and %d other of %d messages, want %d own of 4", p.name, got.Own, got.Other, got.Messages, wantOwn)
		}
		if got.XSS || got.Markup != 0 {
			t.Errorf("%s: message text was parsed as HTML (xss=%v, %d elements in .text)", p.name, got.XSS, got.Markup)
		}
	}

	dir := os.Getenv("WSD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	alice.screenshot(t, filepath.Join(dir, "chat-alice.png"))
	bob.screenshot(t, filepath.Join(dir, "chat-bob.png"))
	// And the phone layout.
	bob.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true,
	}, nil)
	bob.waitFor(t, "the phone layout", `window.innerWidth === 390`)
	bob.screenshot(t, filepath.Join(dir, "chat-bob-phone.png"))

	// Dark mode.
	alice.call(t, "Emulation.setEmulatedMedia", map[string]any{
		"features": []map[string]string{{"name": "prefers-color-scheme", "value": "dark"}},
	}, nil)
	alice.waitFor(t, "dark mode", `matchMedia("(prefers-color-scheme: dark)").matches`)
	alice.screenshot(t, filepath.Join(dir, "chat-alice-dark.png"))
	alice.call(t, "Emulation.setEmulatedMedia", map[string]any{"features": []map[string]string{}}, nil)

	// When Bob's browser goes away, Alice sees the room shrink.
	bob.close(t)
	alice.waitFor(t, `"1 online" after bob left`, `document.getElementById("online").textContent.trim() === "1 online"`)

	// When the daemon goes away, Alice's page says so, and it reconnects by
	// itself once a daemon listens on the address again.
	d.Stop()
	alice.waitFor(t, "the page to notice the daemon stopped", `document.getElementById("status").dataset.state === "disconnected"`)
	alice.screenshot(t, filepath.Join(dir, "chat-alice-disconnected.png"))
	restartDaemon(t, d.Addr, "-mode", "chat")
	alice.waitFor(t, "the page to reconnect", `document.getElementById("status").dataset.state === "connected"`)
	alice.waitFor(t, `"1 online" after reconnecting`, `document.getElementById("online").textContent.trim() === "1 online"`)
	alice.waitMessage(t, "bob", fromBob) // the history on screen survives

	// Switching rooms closes the old socket: a presence watcher in the old
	// room sees Alice leave, and sees her come back when the URL hash names
	// the room again.
	watcher := dialRaw(t, d.Addr, "/chat/lobby-test?presence=1")
	watcher.waitOnline(t, "chat/lobby-test", 2)
	alice.setValue(t, "#room", "elsewhere")
	alice.click(t, "#join")
	alice.waitFor(t, "the page to be in #elsewhere", `location.hash === "#elsewhere" &&
		document.getElementById("status").dataset.state === "connected" &&
		document.getElementById("online").textContent.trim() === "1 online" &&
		document.querySelectorAll("#messages .message").length === 0`)
	watcher.waitOnline(t, "chat/lobby-test", 1)
	alice.evalJSON(t, `location.hash = "#lobby-test"`, nil)
	alice.waitFor(t, "the page to be back in #lobby-test", `document.getElementById("room").value === "lobby-test" &&
		document.getElementById("status").dataset.state === "connected" &&
		document.getElementById("online").textContent.trim() === "2 online"`)
	watcher.waitOnline(t, "chat/lobby-test", 2)

	for _, p := range []*chatPage{alice, bob} {
		if errs := p.exceptions(); len(errs) > 0 {
			t.Errorf("%s: JavaScript exceptions:\n%s", p.name, strings.Join(errs, "\n"))
		}
	}
}

// restartDaemon runs wsd again on addr, where a stopped daemon listened, and
// stops it when the test ends.
func restartDaemon(t *testing.T, addr string, args ...string) {
	t.Helper()
	cmd := exec.Command(wstest.DaemonBinary(t), append([]string{"-addr", addr, "-admin-addr="}, args...)...)
	out := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("restarted wsd output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("wsd did not start again on %s:\n%s", addr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsd did not listen on %s again in %v: %v\n%s", addr, waitLimit, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawClient is a plain WebSocket client in a chat room.
type rawClient struct{ *websocket.Conn }

func dialRaw(t *testing.T, addr, path string) rawClient {
	t.Helper()
	dialer := websocket.Dialer{HandshakeTimeout: waitLimit}
	c, _, err := dialer.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("raw client %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return rawClient{c}
}

// waitOnline reads presence events until one says online for room.
func (c rawClient) waitOnline(t *testing.T, room string, online int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	var seen []string
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("raw client: waiting for %d online in %s: %v (saw %q)", online, room, err, seen)
		}
		seen = append(seen, string(p))
		var ev struct {
			Type, Room string
			Online     int
		}
		if json.Unmarshal(p, &ev) == nil && ev.Type == "presence" && ev.Room == room && ev.Online == online {
			return
		}
	}
}

// junk connects a raw client to the room, sends what the page must ignore,
// reads until its own last frame comes back (so the pages got it all too) and
// leaves.
func junk(t *testing.T, addr, path string) {
	t.Helper()
	dialer := websocket.Dialer{HandshakeTimeout: waitLimit}
	c, _, err := dialer.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	defer c.Close()
	frames := []struct {
		op   int
		data string
	}{
		{websocket.TextMessage, "not json at all"},
		{websocket.TextMessage, "{broken"},
		{websocket.TextMessage, `[1,2,3]`},
		{websocket.TextMessage, `null`},
		{websocket.TextMessage, `{"type":"unknown","nick":"x","text":"y"}`},
		{websocket.TextMessage, `{"type":"message","nick":5,"text":["x"]}`},
		{websocket.TextMessage, `{"type":"presence","online":"many"}`},
		{websocket.TextMessage, `{"type":"message","nick":"  ","text":"odd time","ts":1e300}`},
		{websocket.BinaryMessage, "\x00\x01\x02\xff{\"type\":\"message\"}"},
		{websocket.TextMessage, strings.Repeat("x", 200000)},
		{websocket.TextMessage, "last"},
	}
	_ = c.SetWriteDeadline(time.Now().Add(waitLimit))
	for _, f := range frames {
		if err := c.WriteMessage(f.op, []byte(f.data)); err != nil {
			t.Fatalf("raw client: %v", err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("raw client: waiting for its frames to come back: %v", err)
		}
		if string(p) == "last" {
			break
		}
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

// chatPage is one headless Chromium process showing the chat page, driven
// over the Chrome DevTools Protocol.
type chatPage struct {
	name string
	cmd  *exec.Cmd
	out  *limitedBuffer
	cdp  *cdpConn

	mu     sync.Mutex
	errors []string
}

// openPage starts Chromium with its own profile on url and attaches to the
// page target.
func openPage(t *testing.T, browser, url, name string) *chatPage {
	t.Helper()
	profile := t.TempDir()
	p := &chatPage{name: name, out: &limitedBuffer{max: 64 << 10}}
	p.cmd = exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-quic", "--no-first-run", "--user-data-dir="+profile,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--window-size=1280,800", "--hide-scrollbars", "--force-color-profile=srgb",
		url)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	// Registered after t.TempDir, so it runs before the profile is removed.
	t.Cleanup(func() {
		if p.cdp != nil {
			// Ask politely so Chromium takes its helper processes down with it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.cdp.call(ctx, "Browser.close", nil, nil)
			cancel()
			p.cdp.close()
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s: chromium output:\n%s", name, p.out.String())
		}
	})

	// Chromium writes "PORT\n/devtools/browser/ID" once it listens.
	var port string
	deadline := time.Now().Add(waitLimit)
	for {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err == nil {
			if lines := strings.Split(string(b), "\n"); len(lines) >= 2 && lines[0] != "" {
				port = strings.TrimSpace(lines[0])
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s: chromium exited before listening for DevTools:\n%s", name, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no DevToolsActivePort in %v:\n%s", name, waitLimit, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Find the page target showing url.
	client := &http.Client{Timeout: 5 * time.Second}
	var wsURL string
	for wsURL == "" {
		var targets []struct {
			Type, URL            string
			WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
		}
		resp, err := client.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		for _, tg := range targets {
			if tg.Type == "page" && strings.HasPrefix(tg.URL, "http://") {
				wsURL = tg.WebSocketDebuggerURL
			}
		}
		if wsURL == "" {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no page target in %v (last error %v, targets %+v)", name, waitLimit, err, targets)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c, err := dialCDP(wsURL, p.onEvent)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p.cdp = c
	p.call(t, "Runtime.enable", nil, nil)
	p.call(t, "Page.enable", nil, nil)
	// The window's size includes browser chrome even when headless: make the
	// viewport itself 1280x800.
	p.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false,
	}, nil)
	p.waitFor(t, "the page to load", `document.readyState === "complete" && !!document.getElementById("messages")`)
	return p
}

// onEvent keeps the page's uncaught exceptions and console errors.
func (p *chatPage) onEvent(method string, params json.RawMessage) {
	var msg string
	switch method {
	case "Runtime.exceptionThrown":
		var e struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		_ = json.Unmarshal(params, &e)
		msg = e.ExceptionDetails.Text + " " + e.ExceptionDetails.Exception.Description
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		_ = json.Unmarshal(params, &e)
		if e.Type != "error" && e.Type != "assert" {
			return
		}
		msg = "console." + e.Type + ":"
		for _, a := range e.Args {
			msg += fmt.Sprintf(" %v%s", a.Value, a.Description)
		}
	default:
		return
	}
	p.mu.Lock()
	p.errors = append(p.errors, msg)
	p.mu.Unlock()
}

func (p *chatPage) exceptions() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errors...)
}

func (p *chatPage) call(t *testing.T, method string, params, result any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.cdp.call(ctx, method, params, result); err != nil {
		t.Fatalf("%s: %s: %v", p.name, method, err)
	}
}

// evalJSON evaluates a JavaScript expression in the page and decodes its
// value into v.
func (p *chatPage) evalJSON(t *testing.T, expr string, v any) {
	t.Helper()
	var res struct {
		Result struct {
			Type  string
			Value json.RawMessage
		}
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	p.call(t, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &res)
	if e := res.ExceptionDetails; e != nil {
		t.Fatalf("%s: %s: %s %s", p.name, expr, e.Text, e.Exception.Description)
	}
	if v != nil {
		if err := json.Unmarshal(res.Result.Value, v); err != nil {
			t.Fatalf("%s: %s: result %s (%s): %v", p.name, expr, res.Result.Value, res.Result.Type, err)
		}
	}
}

func (p *chatPage) evalString(t *testing.T, expr string) string {
	t.Helper()
	var s string
	p.evalJSON(t, expr, &s)
	return s
}

// waitFor polls a boolean expression until it is true, for up to waitLimit.
func (p *chatPage) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		var ok bool
		p.evalJSON(t, "!!("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: waited %v for %s; page state: %s", p.name, waitLimit, what, p.state(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state describes the page for failure messages.
func (p *chatPage) state(t *testing.T) string {
	t.Helper()
	return p.evalString(t, `JSON.stringify({
		status: document.getElementById("status").dataset.state,
		statusText: document.getElementById("status").textContent.trim(),
		online: document.getElementById("online").textContent.trim(),
		room: document.getElementById("room").value,
		nick: document.getElementById("nick").value,
		messages: [...document.querySelectorAll("#messages > *")].map(m =>
			(m.dataset.nick ? m.dataset.nick + ": " : "") + (m.querySelector(".text") || m).textContent),
	})`)
}

// waitMessage waits for a message from nick with exactly text in the list.
func (p *chatPage) waitMessage(t *testing.T, nick, text string) {
	t.Helper()
	p.waitFor(t, fmt.Sprintf("message %q from %s", text, nick), fmt.Sprintf(
		`[...document.querySelectorAll("#messages .message")].some(m => m.dataset.nick === %s && m.querySelector(".text").textContent === %s)`,
		jsString(nick), jsString(text)))
}

// setValue sets an input's value as typing would (with an input event).
func (p *chatPage) setValue(t *testing.T, selector, value string) {
	t.Helper()
	p.evalJSON(t, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		el.focus();
		el.value = %s;
		el.dispatchEvent(new Event("input", {bubbles: true}));
	})()`, jsString(selector), jsString(value)), nil)
}

// typeInto focuses an input, clears it and types text with Input.insertText,
// as an IME or a paste would.
func (p *chatPage) typeInto(t *testing.T, selector, text string) {
	t.Helper()
	p.waitFor(t, selector+" to be enabled", fmt.Sprintf(`!document.querySelector(%s).disabled`, jsString(selector)))
	p.evalJSON(t, fmt.Sprintf(`(() => { const el = document.querySelector(%s); el.focus(); el.select(); })()`, jsString(selector)), nil)
	p.call(t, "Input.insertText", map[string]any{"text": text}, nil)
	if got := p.evalString(t, fmt.Sprintf(`document.querySelector(%s).value`, jsString(selector))); got != text {
		t.Fatalf("%s: typed %q into %s, it holds %q", p.name, text, selector, got)
	}
}

// click clicks the middle of an element with real mouse events.
func (p *chatPage) click(t *testing.T, selector string) {
	t.Helper()
	p.waitFor(t, selector+" to be enabled", fmt.Sprintf(`!document.querySelector(%s).disabled`, jsString(selector)))
	var pt struct{ X, Y float64 }
	p.evalJSON(t, fmt.Sprintf(`(() => {
		const el = document.querySelector(%s);
		el.scrollIntoView({block: "center"});
		const r = el.getBoundingClientRect();
		return {X: r.left + r.width / 2, Y: r.top + r.height / 2};
	})()`, jsString(selector)), &pt)
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		p.call(t, "Input.dispatchMouseEvent", map[string]any{
			"type": typ, "x": pt.X, "y": pt.Y, "button": "left", "clickCount": 1,
		}, nil)
	}
}

// pressEnter presses and releases Enter in the focused element.
func (p *chatPage) pressEnter(t *testing.T) {
	t.Helper()
	p.call(t, "Input.dispatchKeyEvent", map[string]any{
		"type": "keyDown", "key": "Enter", "code": "Enter", "text": "\r",
		"windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
	}, nil)
	p.call(t, "Input.dispatchKeyEvent", map[string]any{
		"type": "keyUp", "key": "Enter", "code": "Enter",
		"windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
	}, nil)
}

// screenshot saves a PNG of the page to path.
func (p *chatPage) screenshot(t *testing.T, path string) {
	t.Helper()
	p.waitFor(t, "transitions to end before a screenshot",
		`document.getAnimations().every(a => a.playState !== "running" || a.effect.getTiming().iterations === Infinity)`)
	var res struct{ Data string }
	p.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: screenshot %s", p.name, path)
}

// close shuts the browser down and waits until its process has exited.
func (p *chatPage) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.cdp.call(ctx, "Browser.close", nil, nil)
	p.cdp.close()
	p.cdp = nil
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// cdpConn is a minimal Chrome DevTools Protocol client: numbered requests,
// responses matched by id, events handed to a callback.
type cdpConn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpResponse
	err     error // set when the reader stops
	done    chan struct{}
}

type cdpResponse struct {
	Result json.RawMessage
	Error  *struct {
		Code    int
		Message string
		Data    string
	}
}

func dialCDP(url string, onEvent func(string, json.RawMessage)) (*cdpConn, error) {
	dialer := websocket.Dialer{HandshakeTimeout: waitLimit}
	ws, _, err := dialer.Dial(url, nil)
	if err != nil {
		return nil, fmt.Errorf("devtools %s: %w", url, err)
	}
	ws.SetReadLimit(256 << 20) // screenshots
	c := &cdpConn{ws: ws, onEvent: onEvent, pending: map[int64]chan cdpResponse{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *cdpConn) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var m struct {
			ID     int64
			Method string
			Params json.RawMessage
			cdpResponse
		}
		if err := json.Unmarshal(data, &m); err != nil {
			continue
		}
		if m.ID == 0 {
			if c.onEvent != nil && m.Method != "" {
				c.onEvent(m.Method, m.Params)
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m.cdpResponse
		}
	}
}

func (c *cdpConn) call(ctx context.Context, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan cdpResponse, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.ws.SetWriteDeadline(dl)
	}
	err = c.ws.WriteMessage(websocket.TextMessage, msg)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s (%d) %s", r.Error.Message, r.Error.Code, r.Error.Data)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("devtools connection closed: %w", c.err)
	case <-ctx.Done():
		return errors.New("no answer: " + ctx.Err().Error())
	}
}

func (c *cdpConn) close() {
	_ = c.ws.Close()
	<-c.done
}
