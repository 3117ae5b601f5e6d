package interop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/wsdproject/wsd/internal/wstest"
)

// chatBinaryPrefix starts every binary chat message of these tests; it is
// not valid UTF-8, so a binary message relayed as text would fail the
// connection.
const chatBinaryPrefix = "\xff\x00"

// chatMsg is one relayed message of TestChatRooms: which room and sender it
// came from and its sequence number in that sender's stream. Odd sequence
// numbers go as binary.
type chatMsg struct {
	room, sender, seq int
}

func (m chatMsg) encode() (int, []byte) {
	s := fmt.Sprintf("room=%d sender=%d seq=%d", m.room, m.sender, m.seq)
	if m.seq%2 == 1 {
		return websocket.BinaryMessage, []byte(chatBinaryPrefix + s)
	}
	return websocket.TextMessage, []byte(s)
}

func decodeChatMsg(typ int, p []byte) (chatMsg, error) {
	var m chatMsg
	s := string(p)
	if typ == websocket.BinaryMessage {
		var ok bool
		if s, ok = strings.CutPrefix(s, chatBinaryPrefix); !ok {
			return m, fmt.Errorf("binary message %q without the binary prefix", truncate(p, 64))
		}
	}
	if _, err := fmt.Sscanf(s, "room=%d sender=%d seq=%d", &m.room, &m.sender, &m.seq); err != nil {
		return m, fmt.Errorf("unexpected message (type %d) %q: %v", typ, truncate(p, 64), err)
	}
	if wantTyp, _ := m.encode(); wantTyp != typ {
		return m, fmt.Errorf("message %q arrived with type %d, sent as %d", s, typ, wantTyp)
	}
	return m, nil
}

// readMessages reads n messages from c, each read with a deadline.
func readMessages(c *websocket.Conn, n int) ([]chatMsg, error) {
	out := make([]chatMsg, 0, n)
	for len(out) < n {
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			return out, err
		}
		typ, p, err := c.ReadMessage()
		if err != nil {
			return out, fmt.Errorf("after %d of %d messages: %w", len(out), n, err)
		}
		m, err := decodeChatMsg(typ, p)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

// waitSubscribers polls the admin API until topic has n subscribers.
func waitSubscribers(t *testing.T, adminAddr, topic string, n int) {
	t.Helper()
	a := newAdminClient(adminAddr, "")
	deadline := time.Now().Add(ioTimeout)
	for {
		status, b := a.do(t, "GET", "/api/topics/"+topic, "", false)
		var got topicInfo
		if status == http.StatusOK && json.Unmarshal(b, &got) == nil && got == (topicInfo{topic, n}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/topics/%s: status %d, %s; want %d subscribers", topic, status, b, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestChatRooms has 5 gorilla clients in each of 3 rooms send text and
// binary messages at the same time. Each message must reach every client of
// its room (its sender too, unless -skip-sender) once, in its sender's
// order, with its type, and no client of another room.
func TestChatRooms(t *testing.T) {
	t.Parallel()
	rooms := []struct{ path, topic string }{{"/chat/a", "chat/a"}, {"/chat/b", "chat/b"}, {"/ws", "ws"}}
	const perRoom, perSender = 5, 6
	for _, tc := range []struct {
		name       string
		skipSender bool
	}{{"sender included", false}, {"skip-sender", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			adminAddr := wstest.FreeAddr(t)
			args := []string{"-mode", "chat", "-admin-addr", adminAddr}
			if tc.skipSender {
				args = append(args, "-skip-sender")
			}
			d := wstest.StartDaemon(t, args...)
			dialer := gorillaDialer(nil)
			conns := make([][]*websocket.Conn, len(rooms))
			for r, room := range rooms {
				for range perRoom {
					c, _ := dialGorilla(t, dialer, "ws://"+d.Addr+room.path, nil)
					conns[r] = append(conns[r], c)
				}
			}
			for _, room := range rooms {
				waitSubscribers(t, adminAddr, room.topic, perRoom)
			}

			expect := perRoom * perSender
			if tc.skipSender {
				expect = (perRoom - 1) * perSender
			}
			var wg sync.WaitGroup
			got := make([][][]chatMsg, len(rooms))
			readErr := make([][]error, len(rooms))
			sendErr := make([][]error, len(rooms))
			for r := range rooms {
				got[r] = make([][]chatMsg, perRoom)
				readErr[r] = make([]error, perRoom)
				sendErr[r] = make([]error, perRoom)
				for i, c := range conns[r] {
					wg.Add(2)
					go func() {
						defer wg.Done()
						got[r][i], readErr[r][i] = readMessages(c, expect)
					}()
					go func() {
						defer wg.Done()
						for seq := range perSender {
							typ, p := chatMsg{r, i, seq}.encode()
							if err := c.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
								sendErr[r][i] = err
								return
							}
							if err := c.WriteMessage(typ, p); err != nil {
								sendErr[r][i] = err
								return
							}
						}
					}()
				}
			}
			wg.Wait()
			for r, room := range rooms {
				for i := range perRoom {
					if err := sendErr[r][i]; err != nil {
						t.Errorf("%s client %d: send: %v", room.path, i, err)
					}
					if err := readErr[r][i]; err != nil {
						t.Errorf("%s client %d: read: %v", room.path, i, err)
						continue
					}
					next := make([]int, perRoom) // next seq per sender
					for _, m := range got[r][i] {
						switch {
						case m.room != r:
							t.Errorf("%s client %d got a message of room %s: %+v", room.path, i, rooms[m.room].path, m)
						case tc.skipSender && m.sender == i:
							t.Errorf("%s client %d got its own message back with -skip-sender: %+v", room.path, i, m)
						case m.sender < 0 || m.sender >= perRoom:
							t.Errorf("%s client %d got a message from an unknown sender: %+v", room.path, i, m)
						case m.seq != next[m.sender]:
							t.Errorf("%s client %d: got %+v, want seq %d of that sender next (order per sender)", room.path, i, m, next[m.sender])
						default:
							next[m.sender]++
						}
					}
				}
			}
			if t.Failed() {
				return
			}

			// Nothing else is queued: after one message from client 0,
			// then one from client 1, each client's next messages are
			// exactly those (without its own with -skip-sender).
			for _, from := range []int{0, 1} {
				for r, room := range rooms {
					marker := fmt.Sprintf("end from %d in %s", from, room.path)
					gorillaWrite(t, conns[r][from], websocket.TextMessage, []byte(marker))
					for i, c := range conns[r] {
						if tc.skipSender && i == from {
							continue
						}
						if typ, p := gorillaRead(t, c); typ != websocket.TextMessage || string(p) != marker {
							t.Fatalf("%s client %d: got type %d %q, want the marker %q (an extra or missing message)", room.path, i, typ, truncate(p, 64), marker)
						}
					}
				}
			}
		})
	}
}

// presence is a chat presence event.
type presence struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Online int    `json:"online"`
}

// expectPresence reads the next message of c and fails unless it is the
// presence event {presence, room, online}.
func expectPresence(t *testing.T, name string, c *websocket.Conn, room string, online int) {
	t.Helper()
	typ, p := gorillaRead(t, c)
	var got presence
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if typ != websocket.TextMessage || dec.Decode(&got) != nil || got != (presence{"presence", room, online}) {
		t.Fatalf("%s: got message type %d %q, want presence of %s with online %d", name, typ, truncate(p, 120), room, online)
	}
}

// expectText reads the next message of c and fails unless it is text s.
func expectText(t *testing.T, name string, c *websocket.Conn, s string) {
	t.Helper()
	if typ, p := gorillaRead(t, c); typ != websocket.TextMessage || string(p) != s {
		t.Fatalf("%s: got message type %d %q, want text %q", name, typ, truncate(p, 120), s)
	}
}

// TestChatPresence checks the presence events of ?presence=1 clients as
// clients join and leave (closing cleanly or dropping TCP), per room.
func TestChatPresence(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "chat")
	dialer := gorillaDialer(nil)
	dial := func(path string) *websocket.Conn {
		t.Helper()
		c, _ := dialGorilla(t, dialer, "ws://"+d.Addr+path, nil)
		return c
	}
	const room = "chat/p"
	w1 := dial("/chat/p?presence=1")
	expectPresence(t, "w1 joins", w1, room, 1)
	w2 := dial("/chat/p?presence=1")
	expectPresence(t, "w2 joins: w1", w1, room, 2)
	expectPresence(t, "w2 joins: w2", w2, room, 2)
	p3 := dial("/chat/p")
	expectPresence(t, "p3 joins: w1", w1, room, 3)
	expectPresence(t, "p3 joins: w2", w2, room, 3)
	q := dial("/chat/q?presence=1") // another room: w1 and w2 hear nothing
	expectPresence(t, "q joins its own room", q, "chat/q", 1)
	p4 := dial("/chat/p?presence=0")
	expectPresence(t, "p4 joins: w1", w1, room, 4)
	expectPresence(t, "p4 joins: w2", w2, room, 4)

	// A chat message is next for everyone in the room: p3 and p4 got no
	// presence events, and q's join did not reach room chat/p.
	gorillaWrite(t, p3, websocket.TextMessage, []byte("hello from p3"))
	for name, c := range map[string]*websocket.Conn{"w1": w1, "w2": w2, "p3": p3, "p4": p4} {
		expectText(t, name, c, "hello from p3")
	}

	// p3 leaves with a close handshake, p4 by dropping TCP, then w2.
	closeGorilla(t, p3)
	expectPresence(t, "p3 left: w1", w1, room, 3)
	expectPresence(t, "p3 left: w2", w2, room, 3)
	if err := p4.NetConn().Close(); err != nil {
		t.Fatal(err)
	}
	expectPresence(t, "p4 dropped: w1", w1, room, 2)
	expectPresence(t, "p4 dropped: w2", w2, room, 2)
	closeGorilla(t, w2)
	expectPresence(t, "w2 left: w1", w1, room, 1)

	// Nothing else is queued for w1 or q.
	gorillaWrite(t, w1, websocket.TextMessage, []byte("w1 done"))
	expectText(t, "w1", w1, "w1 done")
	gorillaWrite(t, q, websocket.TextMessage, []byte("q done"))
	expectText(t, "q", q, "q done")
}

// closeGorilla sends close 1000 and waits for the server's close frame.
func closeGorilla(t *testing.T, c *websocket.Conn) {
	t.Helper()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("sending close: %v", err)
	}
	if ce := gorillaExpectClose(t, c, ioTimeout); ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("server answered close with %d, want 1000", ce.Code)
	}
}

// TestChatDemoPageAndUpgrades checks that GET / serves the HTML demo page
// while WebSocket upgrades work on the same port, on / and other paths.
func TestChatDemoPageAndUpgrades(t *testing.T) {
	t.Parallel()
	d := wstest.StartDaemon(t, "-mode", "chat")
	dialer := gorillaDialer(nil)
	// Open WebSockets first; they must keep working around the HTTP requests.
	lobby, _ := dialGorilla(t, dialer, "ws://"+d.Addr+"/?presence=1", nil)
	expectPresence(t, "lobby", lobby, "lobby", 1)
	room, _ := dialGorilla(t, dialer, "ws://"+d.Addr+"/chat/a", nil)
	index, _ := dialGorilla(t, dialer, "ws://"+d.Addr+"/index.html", nil)

	hc := &http.Client{Timeout: ioTimeout}
	cases := []struct {
		method, path string
		status       int
		contentType  string // prefix
		bodyHas      string // case-insensitive
		header       string // a header that must be present: "Name: value"
	}{
		{"GET", "/", 200, "text/html", "<html", ""},
		{"GET", "/index.html", 200, "text/html", "<html", ""},
		{"GET", "/?x=1", 200, "text/html", "<html", ""},
		{"GET", "/chat/a", 426, "", "websocket", "Upgrade: websocket"},
		{"GET", "/ws", 426, "", "websocket", "Upgrade: websocket"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+d.Addr+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tc.status, truncate(body, 200))
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tc.contentType)
			}
			if !strings.Contains(strings.ToLower(string(body)), strings.ToLower(tc.bodyHas)) {
				t.Errorf("body (%d bytes) does not contain %q: %q", len(body), tc.bodyHas, truncate(body, 200))
			}
			if name, value, ok := strings.Cut(tc.header, ": "); ok && !strings.EqualFold(resp.Header.Get(name), value) {
				t.Errorf("header %s: %q, want %q", name, resp.Header.Get(name), value)
			}
		})
	}

	// The WebSockets still work: each is its own room and gets its own
	// messages back (the sender is included by default).
	for name, c := range map[string]*websocket.Conn{"/": lobby, "/chat/a": room, "/index.html": index} {
		gorillaEcho(t, c, websocket.TextMessage, []byte("still here on "+name))
		gorillaEcho(t, c, websocket.BinaryMessage, []byte(chatBinaryPrefix+"binary on "+name))
	}
	// And a new one on / after the page was served.
	late, _ := dialGorilla(t, dialer, "ws://"+d.Addr+"/", nil)
	expectPresence(t, "lobby after a second join", lobby, "lobby", 2)
	gorillaWrite(t, late, websocket.TextMessage, []byte("late"))
	expectText(t, "late", late, "late")
	expectText(t, "lobby", lobby, "late")
}
