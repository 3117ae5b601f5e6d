package engine_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/engine"
)

// A check too slow for the event loop (a password hash, a signature, a call
// to another service) runs in a goroutine: OnUpgrade copies what it needs
// from the request, defers its answer with Request.Defer, and the goroutine
// accepts or rejects the upgrade through the Pending. Meanwhile the loop
// serves its other connections, and the client's input waits unread.
func ExampleRequest_Defer() {
	slowCheck := func(token string) (user string, ok bool) {
		// bcrypt, ECDSA, a database...
		return "alice", token == "Bearer s3cret"
	}
	addr, shutdown := serve(greeter{}, engine.Options{
		OnUpgrade: func(req *engine.Request) *engine.Response {
			token := req.Header("Authorization") // the Request is gone once OnUpgrade returns
			p := req.Defer()
			go func() {
				if user, ok := slowCheck(token); ok {
					p.Accept(user) // becomes the Conn's Context
					return
				}
				p.Reject(&engine.Response{Status: http.StatusUnauthorized, Body: []byte("bad token")})
			}()
			return nil
		},
	})
	defer shutdown()

	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", http.Header{"Authorization": {"Bearer guess"}})
	if !errors.Is(err, websocket.ErrBadHandshake) {
		log.Fatalf("dial with a wrong token: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("wrong token: %d %s\n", resp.StatusCode, body)

	c := dial(addr, http.Header{"Authorization": {"Bearer s3cret"}})
	defer c.Close()
	fmt.Println("good token:", receive(c))
	// Output:
	// wrong token: 401 bad token
	// good token: hello, alice
}
