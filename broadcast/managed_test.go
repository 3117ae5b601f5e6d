package broadcast_test

import (
	"errors"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// subscribeResult subscribes each connection to "t" and reports the error.
type subscribeResult struct {
	engine.NopHandler
	hub  *broadcast.Hub
	errs chan error
}

func (h *subscribeResult) OnOpen(c *engine.Conn) { h.errs <- h.hub.Subscribe(c, "t") }

// TestSubscribeNeedsHandler: a connection that was not opened through
// hub.Handler cannot subscribe (the hub would never see it close, and
// would keep it and its topic forever); through the Handler it can, and
// leaves its topics when it closes.
func TestSubscribeNeedsHandler(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		hub := broadcast.New(broadcast.Options{})
		h := &subscribeResult{hub: hub, errs: make(chan error, 1)}
		var eh engine.Handler = h
		if wrapped {
			eh = hub.Handler(h)
		}
		_, addr := wstest.StartEngine(t, eh, engine.Options{})
		cl := wstest.Connect(t, addr)
		err := <-h.errs
		switch {
		case !wrapped && !errors.Is(err, broadcast.ErrNotManaged):
			t.Fatalf("Subscribe without hub.Handler: %v, want ErrNotManaged", err)
		case !wrapped && hub.Count("t") != 0:
			t.Fatalf("Subscribe without hub.Handler still subscribed: count %d", hub.Count("t"))
		case wrapped && (err != nil || hub.Count("t") != 1):
			t.Fatalf("Subscribe through hub.Handler: %v, count %d", err, hub.Count("t"))
		}
		cl.CloseHandshake()
		wstest.WaitFor(t, 5*time.Second, "no subscribers and no connections", func() bool {
			s := hub.Stats()
			return hub.Count("t") == 0 && s.Connections == 0 && s.Topics == 0
		})
	}
}

// TestHubAcrossEngines: one Hub serves two Engines, whose loops have the
// same indexes. Each subscriber gets every publish once, written by its
// own engine's loop (-race reports a write from another engine's loop).
func TestHubAcrossEngines(t *testing.T) {
	hub := broadcast.New(broadcast.Options{})
	var clients []*wstest.Client
	for range 2 {
		h := &subscriber{hub: hub, opened: make(chan *engine.Conn, 4)}
		_, addr := wstest.StartEngine(t, hub.Handler(h), engine.Options{EventLoops: 1, KeepPath: true})
		for range 2 {
			cl := wstest.Dial(t, addr)
			cl.Handshake("/news")
			<-h.opened
			clients = append(clients, cl)
		}
	}
	if n := hub.Count("news"); n != 4 {
		t.Fatalf("%d subscribers, want 4", n)
	}
	const msgs = 50
	for i := range msgs {
		if n := hub.Publish("news", codec.OpText, []byte{byte('a' + i%26)}); n != 4 {
			t.Fatalf("publish %d reached %d subscribers, want 4", i, n)
		}
	}
	for ci, cl := range clients {
		for i := range msgs {
			f := cl.ExpectFrame()
			if f.Opcode != wstest.OpText || string(f.Payload) != string(rune('a'+i%26)) {
				t.Fatalf("client %d, message %d: %v", ci, i, f)
			}
		}
	}
	wstest.WaitFor(t, 5*time.Second, "every frame counted", func() bool { return hub.Stats().Delivered == 4*msgs })
	for _, cl := range clients {
		cl.CloseHandshake()
	}
}
