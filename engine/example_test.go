package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// An echo server: echo (in the package doc) writes every message back.
// serve, below, runs the engine; a gorilla/websocket client sends a message
// and prints the reply.
func Example_echo() {
	addr, shutdown := serve(echo{}, engine.Options{})
	defer shutdown()

	c := dial(addr, nil)
	defer c.Close()
	say(c, "hello")
	fmt.Println(receive(c))
	// Output: hello
}

// greeter greets each connection by the name OnUpgrade attached to it.
type greeter struct{ engine.NopHandler }

func (greeter) OnOpen(c *engine.Conn) {
	_ = c.Write(codec.OpText, []byte("hello, "+c.Context().(string)))
}

// OnUpgrade authenticates each upgrade request: without a known token it
// answers 401; with one it attaches the user's name to the connection
// through Request.Context, where the handler finds it with Conn.Context.
func ExampleOptions_auth() {
	// OnUpgrade runs on the event loop: the check must be cheap (a map
	// lookup here), never a slow password hash.
	users := map[string]string{"Bearer s3cret": "alice"}
	addr, shutdown := serve(greeter{}, engine.Options{
		OnUpgrade: func(req *engine.Request) *engine.Response {
			name, ok := users[req.Header("Authorization")]
			if !ok {
				return &engine.Response{Status: http.StatusUnauthorized, Body: []byte("a token, please")}
			}
			req.Context = name
			return nil
		},
	})
	defer shutdown()

	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if !errors.Is(err, websocket.ErrBadHandshake) {
		log.Fatalf("dial without a token: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("without a token: %d %s\n", resp.StatusCode, body)

	c := dial(addr, http.Header{"Authorization": {"Bearer s3cret"}})
	defer c.Close()
	fmt.Println("with a token:", receive(c))
	// Output:
	// without a token: 401 a token, please
	// with a token: hello, alice
}

// worker answers each message after work too slow for the event loop
// (a database query, say): OnMessage hands it to a goroutine, which replies
// with Conn.Send, safe from any goroutine.
type worker struct{ engine.NopHandler }

func (worker) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	job := string(p) // p is valid only until OnMessage returns
	go func() {
		result := strings.ToUpper(job) // the slow work
		_ = c.Send(codec.OpText, []byte(result))
	}()
}

func ExampleConn_Send() {
	addr, shutdown := serve(worker{}, engine.Options{})
	defer shutdown()

	c := dial(addr, nil)
	defer c.Close()
	for _, job := range []string{"first", "second"} {
		say(c, job)
		fmt.Println(receive(c))
	}
	// Output:
	// FIRST
	// SECOND
}

// serve runs an engine for h on a free loopback port, the way a program
// runs one, and returns its address and a function that shuts it down:
// close 1001 to every connection, then stop.
func serve(h engine.Handler, o engine.Options) (addr string, shutdown func()) {
	addr = freeAddr()
	o.Addrs = []string{addr}
	e, err := engine.New(h, o)
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

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// dial opens a gorilla/websocket client connection to addr, sending
// header with the upgrade request.
func dial(addr string, header http.Header) *websocket.Conn {
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", header)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// say sends a text message.
func say(c *websocket.Conn, s string) {
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		log.Fatal(err)
	}
}

// receive reads one message from c.
func receive(c *websocket.Conn) string {
	_, p, err := c.ReadMessage()
	if err != nil {
		log.Fatal(err)
	}
	return string(p)
}
