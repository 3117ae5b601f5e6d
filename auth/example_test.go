package auth_test

import (
	"encoding/base64"
	"fmt"
	"time"

	"github.com/wsdproject/wsd/auth"
	"golang.org/x/crypto/bcrypt"
)

// A service mints a token with its private key; the daemon verifies it
// with the public key and learns the user and its topics.
func ExampleMint() {
	private, public, err := auth.GenerateKey(auth.AlgES)
	if err != nil {
		panic(err)
	}
	now := time.Now()
	token, err := auth.Mint(auth.Config{Alg: auth.AlgES, Key: private, Issuer: "accounts"}, auth.Claims{
		Subject:   "alice",
		ExpiresAt: now.Add(time.Hour),
		Topics:    []string{"news.*"},
		Publish:   []string{"chat.{sub}"},
		Info:      []byte(`{"name":"Alice"}`),
	})
	if err != nil {
		panic(err)
	}

	verifier, err := auth.NewJWT(auth.Config{Alg: auth.AlgES, Key: public, Issuer: "accounts"})
	if err != nil {
		panic(err)
	}
	id, err := verifier.Verify(token, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Sub, string(id.Info))
	fmt.Println(id.CanSubscribe("news.sport"), id.CanSubscribe("user.alice"), id.CanSubscribe("user.bob"))
	fmt.Println(id.CanPublish("chat.alice"), id.CanPublish("chat.bob"))

	_, err = verifier.Verify(token, now.Add(2*time.Hour))
	fmt.Println(auth.Status(err), err)
	// Output:
	// alice {"name":"Alice"}
	// true true false
	// true false
	// 401 auth: token expired
}

// Clients with no credentials share one identity where authentication is
// optional.
func ExampleAnonymous() {
	anon, err := auth.Anonymous(auth.Permissions{Subscribe: []string{"public.*"}})
	if err != nil {
		panic(err)
	}
	fmt.Println(anon.CanSubscribe("public.news"), anon.CanSubscribe("private"), anon.CanPublish("public.news"))
	// Output: true false false
}

// bcrypt must not run on an event loop: the loop asks the cache, and on a
// miss hands the check to a Pool, whose done posts the result back.
func ExamplePool() {
	hash, _ := bcrypt.GenerateFromPassword([]byte("builder"), bcrypt.MinCost)
	users, err := auth.ParseHtpasswd([]byte("bob:"+string(hash)+"\n"), auth.BasicOptions{
		Permissions: auth.Permissions{Subscribe: []string{"site.*"}},
	})
	if err != nil {
		panic(err)
	}
	pool := auth.NewPool(auth.PoolOptions{Workers: 1, Queue: 16})
	defer pool.Close()

	header := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:builder"))
	for range 2 {
		if id, ok := users.Cached(header); ok { // cheap: fine on the loop
			fmt.Println("cached:", id.Sub)
			continue
		}
		result := make(chan string, 1)
		err := pool.Submit(func() (*auth.Identity, error) { return users.CheckBasic(header) },
			func(id *auth.Identity, err error) {
				if err != nil {
					result <- fmt.Sprint(auth.Status(err), " ", err)
					return
				}
				result <- "checked: " + id.Sub
			})
		if err != nil { // ErrBusy: answer 503 at once
			fmt.Println(auth.Status(err))
			continue
		}
		fmt.Println(<-result)
	}
	// Output:
	// checked: bob
	// cached: bob
}
