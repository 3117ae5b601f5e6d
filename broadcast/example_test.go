package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// room is a chat room: every connection joins the "lobby" topic, and every
// message is published to it, sender included.
type room struct {
	engine.NopHandler
	hub *broadcast.Hub
}

func (r room) OnOpen(c *engine.Conn) {
	r.hub.Subscribe(c, "lobby")
	// Written after Subscribe, on the same loop: a client that reads the
	// welcome knows it will get every later message of the lobby.
	_ = c.Write(codec.OpText, []byte("welcome"))
}

func (r room) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	r.hub.Publish("lobby", op, p)
}

// A chat room: hub.Handler wraps the room's handler so that the hub forgets
// closed connections. Two clients join; each message reaches both.
func Example_chat() {
	hub := broadcast.New(broadcast.Options{})
	addr, shutdown := serve(hub.Handler(room{hub: hub}))
	defer shutdown()

	alice, bob := enterRoom(addr), enterRoom(addr)
	defer alice.Close()
	defer bob.Close()

	say(alice, "hi, it's alice")
	fmt.Println("alice got:", receive(alice))
	fmt.Println("bob got:  ", receive(bob))
	say(bob, "hello alice")
	fmt.Println("alice got:", receive(alice))
	fmt.Println("bob got:  ", receive(bob))
	// Output:
	// alice got: hi, it's alice
	// bob got:   hi, it's alice
	// alice got: hello alice
	// bob got:   hello alice
}

// Publish is safe from any goroutine: here a producer publishes a tick to
// the "lobby" topic every 10 ms until it is stopped, and a client prints
// the first three.
func ExampleHub_Publish() {
	hub := broadcast.New(broadcast.Options{})
	addr, shutdown := serve(hub.Handler(room{hub: hub}))
	defer shutdown()

	c := enterRoom(addr) // subscribed once it has read the welcome
	defer c.Close()

	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-t.C:
				hub.Publish("lobby", codec.OpText, fmt.Appendf(nil, "tick %d", i))
			case <-stop:
				return
			}
		}
	}()
	for range 3 {
		fmt.Println(receive(c))
	}
	close(stop)
	<-stopped
	// Output:
	// tick 1
	// tick 2
	// tick 3
}

// enterRoom connects a client to the room and reads its welcome.
func enterRoom(addr string) *websocket.Conn {
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		log.Fatal(err)
	}
	if m := receive(c); m != "welcome" {
		log.Fatalf("first message %q, want the welcome", m)
	}
	return c
}

// say sends a text message.
func say(c *websocket.Conn, s string) {
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		log.Fatal(err)
	}
}

// receive reads one message.
func receive(c *websocket.Conn) string {
	_, p, err := c.ReadMessage()
	if err != nil {
		log.Fatal(err)
	}
	return string(p)
}

// serve runs an engine for h on a free loopback port and returns its
// address and a function that shuts it down.
func serve(h engine.Handler) (addr string, shutdown func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	e, err := engine.New(h, engine.Options{Addrs: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := e.Run(); !errors.Is(err, engine.ErrEngineClosed) {
			log.Fatal(err) // could not listen, say
		}
	}()
	<-e.Ready()
	return addr, func() { _ = e.Shutdown(context.Background()) }
}
