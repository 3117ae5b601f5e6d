package broadcast_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// subscriber subscribes every connection to the topic named by its path.
type subscriber struct {
	engine.NopHandler
	hub    *broadcast.Hub
	opened chan *engine.Conn
}

func (s *subscriber) OnOpen(c *engine.Conn) {
	s.hub.Subscribe(c, c.Path()[1:])
	if s.opened != nil {
		s.opened <- c
	}
}

func startHub(t testing.TB, hopts broadcast.Options, loops int) (*broadcast.Hub, *subscriber, string) {
	t.Helper()
	hub := broadcast.New(hopts)
	h := &subscriber{hub: hub, opened: make(chan *engine.Conn, 1<<16)}
	addr := wstest.FreeAddr(t)
	e, err := engine.New(hub.Handler(h), engine.Options{Addrs: []string{addr}, EventLoops: loops, KeepPath: true, PingInterval: -1, IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run() }()
	<-e.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
		if err := <-done; !errors.Is(err, engine.ErrEngineClosed) {
			t.Errorf("Run: %v", err)
		}
	})
	return hub, h, addr
}

func TestHubPublishSmoke(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{}, 2)
	var clients []*wstest.Client
	for range 4 {
		c := wstest.Dial(t, addr)
		c.Handshake("/news")
		<-h.opened
		clients = append(clients, c)
	}
	if n := hub.Publish("news", codec.OpText, []byte("hello")); n != 4 {
		t.Fatalf("Publish reached %d, want 4", n)
	}
	for _, c := range clients {
		c.ExpectText("hello")
	}
	if s := hub.Stats(); s.Delivered != 4 || s.Topics != 1 || s.Subscriptions != 4 {
		t.Fatalf("stats %+v", s)
	}
}
