package broadcast_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// member is a client and the server's side of its connection.
type member struct {
	c    *client
	conn *engine.Conn
}

// join connects one client per path, in order, pairing each with its
// engine.Conn (clients connect one at a time, so the next connection the
// handler opens is the client's).
func join(t *testing.T, h *subscriber, addr string, paths ...string) []member {
	t.Helper()
	ms := make([]member, len(paths))
	for i, p := range paths {
		ms[i].c = mustDial(t, addr, p, dialOptions{})
		ms[i].conn = nextOpened(t, h)
	}
	return ms
}

// expectText reads the next frame of m and fails unless it is text s.
func (m member) expectText(t *testing.T, who, s string) {
	t.Helper()
	op, p, err := m.c.next()
	if err != nil {
		t.Fatalf("%s: want text %q, got %v", who, s, err)
	}
	if op != wstest.OpText || string(p) != s {
		t.Fatalf("%s: want text %q, got op %d %q", who, s, op, p)
	}
}

// chatRoom relays every message to the sender's topics, except the sender.
func chatRoom(hub *broadcast.Hub, c *engine.Conn, op codec.OpCode, p []byte) {
	hub.PublishMessage(broadcast.Message{Topics: hub.Subscriptions(c), Op: op, Payload: p, Exclude: c.ID()})
}

// TestHubExclude checks Message.Exclude: the excluded connection gets
// nothing, everyone else in the message's topics gets it once. After each
// message the hub publishes a marker to every topic; a client that must not
// get the message reads the marker first.
func TestHubExclude(t *testing.T) {
	hub, h, addr := startHubWith(t, hubConfig{loops: 2, onMessage: chatRoom})
	// 0 and 1 in r1, 2 in r2, 3 in both, 4 in nothing.
	ms := join(t, h, addr, "/r1", "/r1", "/r2", "/r1,r2", "/")
	waitFor(t, 10*time.Second, "5 subscriptions", func() bool { return hub.Stats().Subscriptions == 5 })

	cases := []struct {
		name    string
		from    int           // client that sends it as a chat message (the room excludes it), or -1: the test publishes it
		topics  []string      // for from == -1
		exclude func() uint64 // for from == -1
		want    []bool        // which clients get it
	}{
		{name: "chat in r1 excludes the sender", from: 0, want: []bool{false, true, false, true, false}},
		{name: "chat in r1 and r2 reaches each member once", from: 3, want: []bool{true, true, true, false, false}},
		{name: "chat in r2", from: 2, want: []bool{false, false, false, true, false}},
		{name: "client without topics reaches nobody", from: 4, want: []bool{false, false, false, false, false}},
		{name: "Exclude 0 excludes nobody", from: -1, topics: []string{"r1", "r2"},
			exclude: func() uint64 { return 0 }, want: []bool{true, true, true, true, false}},
		{name: "Exclude of a non-member", from: -1, topics: []string{"r1"},
			exclude: func() uint64 { return ms[4].conn.ID() }, want: []bool{true, true, false, true, false}},
		{name: "Exclude of an unknown id", from: -1, topics: []string{"r2"},
			exclude: func() uint64 { return math.MaxUint64 }, want: []bool{false, false, true, true, false}},
		{name: "Exclude of a member in both topics", from: -1, topics: []string{"r2", "r1"},
			exclude: func() uint64 { return ms[3].conn.ID() }, want: []bool{true, true, true, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const msg = "hello room"
			before := hub.Stats().Delivered
			if tc.from >= 0 {
				if err := ms[tc.from].c.write(wstest.Text(msg).Bytes()); err != nil {
					t.Fatal(err)
				}
			} else {
				want := 0
				for _, name := range tc.topics {
					want += hub.Count(name)
				}
				n := hub.PublishMessage(broadcast.Message{Topics: tc.topics, Op: codec.OpText, Payload: []byte(msg), Exclude: tc.exclude()})
				if n != want {
					t.Fatalf("PublishMessage returned %d, want %d", n, want)
				}
			}
			reached := 0
			for i, m := range ms {
				if tc.want[i] {
					reached++
					m.expectText(t, fmt.Sprintf("client %d", i), msg)
				}
			}
			// The chat message is published on the sender's loop; wait
			// until it has been handed to every socket before the marker.
			waitFor(t, 5*time.Second, "delivery", func() bool { return hub.Stats().Delivered-before >= int64(reached) })
			if tc.from >= 0 {
				settle(t, hub)
			}
			hub.PublishMessage(broadcast.Message{Topics: []string{"r1", "r2"}, Op: codec.OpText, Payload: []byte("marker")})
			for i, m := range ms[:4] {
				m.expectText(t, fmt.Sprintf("client %d (marker)", i), "marker")
			}
			if got := settle(t, hub).Delivered - before; got != int64(reached+4) {
				t.Fatalf("Delivered grew by %d, want %d (the message and 4 markers)", got, reached+4)
			}
		})
	}
}

// TestHubSendTo checks SendTo by connection id: only that connection gets
// the message, subscribed or not, and ids the hub does not know (never
// issued, or of a closed connection) give ErrNoConn.
func TestHubSendTo(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{}, 2)
	ms := join(t, h, addr, "/room", "/room", "/")
	gone := join(t, h, addr, "/room")[0]
	// gone leaves with a closing handshake; once its OnClose has run the
	// hub no longer knows its id.
	if err := gone.c.write(wstest.Close(1000, "").Bytes()); err != nil {
		t.Fatal(err)
	}
	if code, err := gone.c.expectClose(nil); err != nil || code != 1000 {
		t.Fatalf("close: code %d, err %v", code, err)
	}
	waitFor(t, 10*time.Second, "the closed connection to be forgotten", func() bool {
		return hub.Stats().Connections == 3 && hub.Count("room") == 2
	})

	cases := []struct {
		name    string
		id      func() uint64
		op      codec.OpCode
		wantErr error
		to      int // client that gets it, -1 for none
	}{
		{name: "subscribed client", id: func() uint64 { return ms[1].conn.ID() }, op: codec.OpText, to: 1},
		{name: "client without topics", id: func() uint64 { return ms[2].conn.ID() }, op: codec.OpText, to: 2},
		{name: "binary", id: func() uint64 { return ms[0].conn.ID() }, op: codec.OpBinary, to: 0},
		{name: "unknown id", id: func() uint64 { return math.MaxUint64 }, op: codec.OpText, wantErr: broadcast.ErrNoConn, to: -1},
		{name: "id 0", id: func() uint64 { return 0 }, op: codec.OpText, wantErr: broadcast.ErrNoConn, to: -1},
		{name: "closed connection", id: func() uint64 { return gone.conn.ID() }, op: codec.OpText, wantErr: broadcast.ErrNoConn, to: -1},
		{name: "reserved opcode", id: func() uint64 { return ms[0].conn.ID() }, op: codec.OpCode(3), wantErr: codec.ErrReservedOpcode, to: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const msg = "just for you"
			err := hub.SendTo(tc.id(), tc.op, []byte(msg))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SendTo: %v, want %v", err, tc.wantErr)
			}
			// A marker through SendTo to each client, after the message:
			// Send keeps the order of Send calls.
			for _, m := range ms {
				if err := hub.SendTo(m.conn.ID(), codec.OpText, []byte("marker")); err != nil {
					t.Fatalf("SendTo marker: %v", err)
				}
			}
			for i, m := range ms {
				if i == tc.to {
					op, p, err := m.c.next()
					if err != nil || op != byte(tc.op) || string(p) != msg {
						t.Fatalf("client %d: got op %d %q (%v), want op %d %q", i, op, p, err, tc.op, msg)
					}
				}
				m.expectText(t, "marker", "marker")
			}
		})
	}
}
