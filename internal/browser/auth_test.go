package browser

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestBrowserAuth drives the demo page against "wsd -mode chat -auth
// required" in headless Chromium: alice's page carries ?token= in its URL
// (passed on to the WebSocket URL), bob types his token in the Token field
// (sent as the first message, {"op":"auth"}); both join the room, see
// "2 online" and each other's messages. A token for another room, typed in
// the field, gets the page's "Not signed in (4004 ...)" and no reconnects.
func TestBrowserAuth(t *testing.T) {
	browser := chromium(t)
	secret := []byte(strings.Repeat("b", 32))
	keyFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	d := wstest.StartDaemon(t, "-mode", "chat", "-auth", "required", "-auth-jwt-key", keyFile, "-auth-jwt-alg", "HS")
	token := func(sub string, rooms ...string) string {
		tok, err := auth.Mint(auth.Config{Alg: auth.AlgHS, Key: secret}, auth.Claims{Subject: sub, ExpiresAt: time.Now().Add(time.Hour), Topics: rooms, Publish: rooms})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := "http://" + d.Addr + "/"

	alice := openPage(t, browser, base+"?token="+url.QueryEscape(token("alice", "chat/team-*"))+"#team-auth", "alice")
	alice.waitFor(t, "alice's page to connect with ?token=", `document.getElementById("status").dataset.state === "connected"`)

	bob := openPage(t, browser, base+"#team-auth", "bob")
	bob.setValue(t, "#token", token("bob", "chat/team-*"))
	bob.setValue(t, "#nick", "bob")
	bob.click(t, "#join")
	bob.waitFor(t, `"Signed in as bob"`, `[...document.querySelectorAll("#messages li")].some(li => li.textContent.includes("Signed in as bob"))`)
	for _, p := range []*chatPage{alice, bob} {
		p.waitFor(t, `"2 online"`, `document.getElementById("online").textContent.trim() === "2 online"`)
	}
	alice.setValue(t, "#nick", "alice")
	alice.click(t, "#join")
	alice.typeInto(t, "#input", "hello bob")
	alice.pressEnter(t)
	bob.waitMessage(t, "alice", "hello bob")
	bob.typeInto(t, "#input", "hi alice")
	bob.pressEnter(t)
	alice.waitMessage(t, "bob", "hi alice")

	eve := openPage(t, browser, base+"#team-auth", "eve")
	eve.setValue(t, "#token", token("eve", "chat/other"))
	eve.click(t, "#join")
	eve.waitFor(t, `"Not signed in (4004"`, `[...document.querySelectorAll("#messages li")].some(li => li.textContent.includes("Not signed in (4004"))`)
	if got := eve.evalString(t, `document.getElementById("status").dataset.state`); got != "disconnected" {
		t.Fatalf("eve's page is %q after the refusal, want disconnected (no reconnect loop)", got)
	}
	for _, p := range []*chatPage{alice, bob} {
		if n := p.evalString(t, `String(document.querySelectorAll("#messages .message").length)`); n != strconv.Itoa(2) {
			t.Errorf("%s's page shows %s messages, want 2", p.name, n)
		}
	}
}
