package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// startChatEngine runs the chat mode on an in-process engine on a free
// loopback port, stopped at cleanup.
func startChatEngine(t *testing.T) string {
	t.Helper()
	hub := broadcast.New(broadcast.Options{})
	md, err := newMode(&config{Mode: "chat"}, hub)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := wstest.StartEngine(t, md.handler, engine.Options{OnUpgrade: md.onUpgrade, PingInterval: -1, IdleTimeout: -1})
	return addr
}

// presenceEvent is the JSON of a chat presence event.
type presenceEvent struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Online int    `json:"online"`
}

// expectPresence reads the next frame of c and fails unless it is the
// presence event of room with online connections.
func expectPresence(t *testing.T, c *wstest.Client, room string, online int) {
	t.Helper()
	f := c.ExpectFrame()
	var got presenceEvent
	dec := json.NewDecoder(bytes.NewReader(f.Payload))
	dec.DisallowUnknownFields()
	if want := (presenceEvent{"presence", room, online}); f.Opcode != wstest.OpText || dec.Decode(&got) != nil || got != want {
		t.Fatalf("got %v %q, want the presence event %+v", f, f.Payload, want)
	}
}

// TestChatPresenceSpoofing connects clients whose room names look like the
// lobby's presence topic, has each send a forged presence event, and checks
// that the lobby's presence watcher gets only the events wsd makes.
func TestChatPresenceSpoofing(t *testing.T) {
	addr := startChatEngine(t)
	watcher := wstest.Dial(t, addr)
	watcher.Handshake("/?presence=1") // room "lobby"
	expectPresence(t, watcher, "lobby", 1)

	forged := `{"type":"presence","room":"lobby","online":9999}`
	spoofPaths := []string{"/presence:lobby", "/presence%20lobby", "/presence+lobby", "/presence", "//presence:lobby"}
	for i, path := range spoofPaths {
		spoofer := wstest.Dial(t, addr)
		spoofer.Handshake(path)
		spoofer.WriteFrames(wstest.Text(forged))
		// The sender gets its own message back once the hub has taken it:
		// from then on, anything the watcher would get from it is queued
		// before the next presence event of the lobby.
		spoofer.ExpectText(forged)

		wstest.Dial(t, addr).Handshake("/lobby")
		expectPresence(t, watcher, "lobby", 2+i)
		spoofer.CloseHandshake()
	}
}

// TestChatRoomNames checks which request paths name which room, and that
// paths with bytes no request target may hold are refused.
func TestChatRoomNames(t *testing.T) {
	addr := startChatEngine(t)
	for _, tc := range []struct{ path, room string }{
		{"/", "lobby"},
		{"/chat/lobby", "chat/lobby"},
		{"/presence:lobby", "presence:lobby"},
	} {
		c := wstest.Dial(t, addr)
		c.Handshake(tc.path + "?presence=1")
		expectPresence(t, c, tc.room, 1)
		c.CloseHandshake()
	}
	for _, path := range []string{"/a\tb", "/a\x00b", "/a\x7fb"} {
		c := wstest.Dial(t, addr)
		c.Write(wstest.BuildRequest("GET", path, wstest.UpgradeHeaders(addr, wstest.NewKey())))
		resp, err := c.ReadResponse()
		if err != nil {
			t.Fatalf("%q: reading the response: %v", path, err)
		}
		if resp.StatusCode != 400 {
			t.Errorf("%q: status %d, want 400", path, resp.StatusCode)
		}
	}
}
