package browser

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// TestBrowserHistoryResume: the demo page in a room that "wsd -history"
// names loses its socket (the page's client is held away with
// wsdClient.drop(true), as a dead network would), messages are said in the
// room meanwhile, and once the page reconnects (with its backoff's reconnect
// skipped) every message shows exactly once: the missed ones marked
// recovered, the others not. Then the page is reloaded after more
// messages: it shows those, recovered, and nothing else.
func TestBrowserHistoryResume(t *testing.T) {
	browser := chromium(t)
	d := wstest.StartDaemon(t, "-mode", "chat", "-history", "chat/*=100/10m")
	page := openPage(t, browser, "http://"+d.Addr+"/#hist-room", "alice")
	page.waitFor(t, "the page to connect", `document.getElementById("status").dataset.state === "connected"`)

	bob := dialRaw(t, d.Addr, "/chat/hist-room")
	say := func(text string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"type": "message", "nick": "bob", "text": text, "ts": time.Now().UnixMilli(), "id": text})
		if err := bob.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
		// The room sends it back to bob too: once he has it, the hub has
		// published it (and kept it).
		_ = bob.SetReadDeadline(time.Now().Add(waitLimit))
		for {
			_, p, err := bob.ReadMessage()
			if err != nil {
				t.Fatalf("bob: %v", err)
			}
			if string(p) == string(b) {
				return
			}
		}
	}
	for i := 1; i <= 3; i++ {
		say(fmt.Sprintf("before-%d", i))
	}
	page.waitMessage(t, "bob", "before-3")

	page.evalJSON(t, `(wsdClient.drop(true), true)`, new(bool))
	page.waitFor(t, "the page to be disconnected", `document.getElementById("status").dataset.state === "disconnected"`)
	for i := 1; i <= 5; i++ {
		say(fmt.Sprintf("missed-%d", i))
	}
	page.evalJSON(t, `(wsdClient.reconnect(), true)`, new(bool))
	page.waitMessage(t, "bob", "missed-5")
	say("after")
	page.waitMessage(t, "bob", "after")

	var got []struct {
		Text      string `json:"text"`
		Recovered bool   `json:"recovered"`
	}
	page.evalJSON(t, `[...document.querySelectorAll("#messages .message")].map(m => ({
		text: m.querySelector(".text").textContent, recovered: m.classList.contains("recovered")}))`, &got)
	want := []string{"before-1", "before-2", "before-3", "missed-1", "missed-2", "missed-3", "missed-4", "missed-5", "after"}
	if len(got) != len(want) {
		t.Fatalf("the page shows %d messages %+v, want %v once each", len(got), got, want)
	}
	for i, w := range want {
		recovered := i >= 3 && i < 8
		if got[i].Text != w || got[i].Recovered != recovered {
			t.Fatalf("message %d: %+v, want %q recovered %t (all: %+v)", i, got[i], w, recovered, got)
		}
	}
	if ex := page.exceptions(); len(ex) > 0 {
		t.Fatalf("page exceptions: %v", ex)
	}

	// Reloading: the page keeps the room's position (localStorage), so a
	// reload shows what was said while it was away, and only that.
	page.evalJSON(t, `(wsdClient.drop(true), true)`, new(bool))
	page.waitFor(t, "the page to be disconnected", `document.getElementById("status").dataset.state === "disconnected"`)
	say("while-away-1")
	say("while-away-2")
	page.evalJSON(t, `(setTimeout(() => location.reload(), 0), true)`, new(bool))
	page.waitMessage(t, "bob", "while-away-2")
	page.evalJSON(t, `[...document.querySelectorAll("#messages .message")].map(m => ({
		text: m.querySelector(".text").textContent, recovered: m.classList.contains("recovered")}))`, &got)
	if len(got) != 2 || got[0].Text != "while-away-1" || got[1].Text != "while-away-2" || !got[0].Recovered || !got[1].Recovered {
		t.Fatalf("after the reload the page shows %+v, want while-away-1 and while-away-2, recovered", got)
	}
}
