// Package natstest runs NATS servers in the tests' own process: a server
// on a loopback port, shut down when the test ends.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server runs a NATS server on port (-1: a free one) of the loopback
// interface until the test ends or Shutdown, and returns it.
func Server(t testing.TB, port int) *server.Server {
	t.Helper()
	return ServerWith(t, &server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
}

// ServerWith is Server with the server's options o. It waits up to 10 s
// for the server to take connections.
func ServerWith(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
