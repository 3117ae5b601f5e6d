package broadcast_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// userFromPath names a connection's user by its path: "/alice"; "/" is
// anonymous.
func userFromPath(c *engine.Conn) string { return strings.TrimPrefix(c.Path(), "/") }

// roomMember subscribes every connection to "room".
type roomMember struct {
	engine.NopHandler
	hub    *broadcast.Hub
	opened chan struct{}
}

func (r *roomMember) OnOpen(c *engine.Conn) {
	_ = r.hub.Subscribe(c, "room")
	r.opened <- struct{}{}
}

// TestUsers: a message to a user reaches each of its connections (two tabs)
// and no one else; Members lists a topic's subscribers with their users
// across loops, up to a limit; closed connections leave the index.
func TestUsers(t *testing.T) {
	hub := broadcast.New(broadcast.Options{UserOf: userFromPath})
	h := &roomMember{hub: hub, opened: make(chan struct{}, 16)}
	_, addr := wstest.StartEngine(t, hub.Handler(h), engine.Options{KeepPath: true, EventLoops: 2})
	dial := func(path string) *wstest.Client {
		cl := wstest.Dial(t, addr)
		cl.Handshake(path)
		<-h.opened
		return cl
	}
	tab1, tab2, bob, anon := dial("/alice"), dial("/alice"), dial("/bob"), dial("/")
	if n := hub.SendToUser("alice", codec.OpText, []byte("for alice")); n != 2 {
		t.Fatalf("SendToUser reached %d connections, want 2", n)
	}
	tab1.ExpectText("for alice")
	tab2.ExpectText("for alice")
	if n := hub.SendToUser("nobody", codec.OpText, []byte("x")); n != 0 {
		t.Fatalf("SendToUser to an unknown user reached %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	total, ms, err := hub.Members(ctx, "room", 0)
	users := make([]string, 0, len(ms))
	for _, m := range ms {
		users = append(users, m.User)
	}
	slices.Sort(users)
	if err != nil || total != 4 || !slices.Equal(users, []string{"", "alice", "alice", "bob"}) {
		t.Fatalf("Members(room) = %d, %q, %v", total, users, err)
	}
	if total, ms, _ := hub.Members(ctx, "room", 2); total != 4 || len(ms) != 2 {
		t.Fatalf("Members with limit 2: total %d, %d listed", total, len(ms))
	}
	if total, ms, _ := hub.Members(ctx, "none", 0); total != 0 || len(ms) != 0 {
		t.Fatalf("Members of an unknown topic: %d, %v", total, ms)
	}
	tab1.CloseHandshake()
	wstest.WaitFor(t, 5*time.Second, "alice down to one connection", func() bool { return len(hub.UserConns("alice")) == 1 })
	if n := hub.SendToUser("alice", codec.OpText, []byte("again")); n != 1 {
		t.Fatalf("after a tab closed: %d", n)
	}
	tab2.ExpectText("again")
	if n := hub.SendToUser("bob", codec.OpText, []byte("bob")); n != 1 {
		t.Fatalf("SendToUser(bob) reached %d", n)
	}
	bob.ExpectText("bob")
	anon.ExpectSilence(50 * time.Millisecond)
}
