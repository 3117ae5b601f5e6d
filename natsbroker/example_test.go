package natsbroker_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// lobby subscribes every connection to the "lobby" topic and publishes
// what it says there.
type lobby struct {
	engine.NopHandler
	hub *broadcast.Hub
}

func (l lobby) OnOpen(c *engine.Conn) { l.hub.Subscribe(c, "lobby") }

func (l lobby) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	l.hub.Publish("lobby", op, p)
}

// runNode starts a wsd node over the broker b on addr: a hub that
// publishes through b, on an engine. It returns a function that stops the
// node in order: the engine, then the broker.
func runNode(b *natsbroker.Broker, addr string) (stop func()) {
	hub := broadcast.New(broadcast.Options{Broker: b})
	b.SetLocal(natsbroker.Local{Topics: hub.Topics, Count: hub.Count, SendTo: hub.SendTo})
	e, err := engine.New(hub.Handler(lobby{hub: hub}), engine.Options{Addrs: []string{"tcp://" + addr}})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = e.Run() }()
	<-e.Ready()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
		_ = b.Close()
	}
}

// A node with an embedded NATS server, on its own: a cluster of one. A
// message a client sends to the lobby goes through NATS and comes back to
// every subscriber, the sender included.
func ExampleNew() {
	b, err := natsbroker.New(natsbroker.Options{Node: "ws1"})
	if err != nil {
		log.Fatal(err)
	}
	addr := freeAddr()
	stop := runNode(b, addr)
	defer stop()

	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The node subscribes to "lobby" on NATS when its first subscriber
	// arrives; wait for it before speaking.
	for b.Stats().Subscriptions == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := b.WaitInterest(context.Background()); err != nil {
		log.Fatal(err)
	}
	_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
	_, p, err := c.ReadMessage()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, through %s\n", p, b.Subject("lobby"))
	// Output: hello, through wsd.t.lobby
}

// Three nodes, each with its embedded NATS server, joined by routes: the
// whole cluster is these processes. Each node would run in its own
// process, on its own machine, with the same route list; here they share
// one process and loopback addresses. A message published on any node
// reaches the lobby's subscribers on all three.
func Example_cluster() {
	routes := []string{"nats://127.0.0.1:6248", "nats://127.0.0.1:6249", "nats://127.0.0.1:6250"}
	for i, listen := range []string{"127.0.0.1:6248", "127.0.0.1:6249", "127.0.0.1:6250"} {
		b, err := natsbroker.New(natsbroker.Options{
			Node:   fmt.Sprintf("ws%d", i+1),
			Listen: listen, // routes from the other nodes
			Routes: routes, // this node's own address among them is skipped
		})
		if err != nil {
			log.Fatal(err)
		}
		stop := runNode(b, fmt.Sprintf("127.0.0.1:%d", 8080+i))
		defer stop()
	}
	// ... clients connect to any node.
}

// Joining an existing NATS deployment, with a credentials file and a
// private CA, and asking the cluster for a topic's subscribers.
func ExampleOptions_join() {
	b, err := natsbroker.New(natsbroker.Options{
		URLs:      []string{"tls://nats-1.internal:4222", "tls://nats-2.internal:4222"},
		CredsFile: "/etc/wsd/nats.creds",
		TLSCAFile: "/etc/wsd/nats-ca.pem",
		Prefix:    "wsd-prod",
	})
	if err != nil {
		log.Fatal(err)
	}
	stop := runNode(b, "0.0.0.0:8080")
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	byNode, err := b.TopicCounts(ctx, "lobby")
	if err != nil {
		log.Print(err) // wraps broadcast.ErrBrokerUnavailable while NATS is unreachable
	}
	for node, n := range byNode {
		fmt.Printf("%s: %d in the lobby\n", node, n)
	}
}

// freeAddr returns a free loopback address.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
