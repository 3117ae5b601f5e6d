package engine_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/codec"
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

// An embedder's JWT authentication with the auth package, as wsd does it:
// ES256 signatures are checked on an auth.Pool (bounded workers and queue),
// the upgrade deferred meanwhile; the identity becomes the Conn's Context.
func ExampleRequest_Defer_jwt() {
	private, public, err := auth.GenerateKey(auth.AlgES)
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := auth.NewJWT(auth.Config{Alg: auth.AlgES, Key: public})
	if err != nil {
		log.Fatal(err)
	}
	pool := auth.NewPool(auth.PoolOptions{})
	defer pool.Close()
	addr, shutdown := serve(userGreeter{}, engine.Options{
		OnUpgrade: func(req *engine.Request) *engine.Response {
			token, ok := auth.Bearer(req.Header("Authorization"))
			if !ok {
				return &engine.Response{Status: http.StatusUnauthorized, Body: []byte("credentials required")}
			}
			p := req.Defer()
			err := pool.Submit(func() (*auth.Identity, error) { return verifier.Verify(token, time.Now()) },
				func(id *auth.Identity, err error) {
					if err != nil {
						p.Reject(&engine.Response{Status: auth.Status(err), Body: []byte(err.(*auth.Error).Reason)})
						return
					}
					p.Accept(id)
				})
			if err != nil { // the queue is full: 503
				p.Reject(&engine.Response{Status: auth.Status(err), Body: []byte("busy")})
			}
			return nil
		},
	})
	defer shutdown()

	forged, _ := auth.Mint(auth.Config{Alg: auth.AlgHS, Key: []byte("a secret of at least thirty-two bytes")}, auth.Claims{Subject: "mallory", ExpiresAt: time.Now().Add(time.Hour)})
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", http.Header{"Authorization": {"Bearer " + forged}})
	if !errors.Is(err, websocket.ErrBadHandshake) {
		log.Fatalf("dial with a forged token: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("HS256 token: %d %s\n", resp.StatusCode, body)

	token, _ := auth.Mint(auth.Config{Alg: auth.AlgES, Key: private}, auth.Claims{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour)})
	c := dial(addr, http.Header{"Authorization": {"Bearer " + token}})
	defer c.Close()
	fmt.Println("ES256 token:", receive(c))
	// Output:
	// HS256 token: 401 algorithm not allowed
	// ES256 token: hello, alice
}

// userGreeter greets each connection by the user of its auth.Identity.
type userGreeter struct{ engine.NopHandler }

func (userGreeter) OnOpen(c *engine.Conn) {
	_ = c.Write(codec.OpText, []byte("hello, "+c.Context().(*auth.Identity).Sub))
}
