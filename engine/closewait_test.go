package engine_test

import (
	"testing"
	"time"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// TestEngineCloseNoWait: with a negative CloseTimeout the engine closes the
// TCP connection right after its close frame, without waiting for a peer
// that never answers, while the default waits (TestEngineCloseTimeout).
func TestEngineCloseNoWait(t *testing.T) {
	rec := newRecorder()
	_, addr := startEngine(t, rec, engine.Options{CloseTimeout: -1, HandshakeTimeout: time.Minute, PingInterval: -1, IdleTimeout: -1})
	client := wstest.Connect(t, addr)
	c := rec.next(t)
	_ = c.Close(4001, "bye")
	client.ExpectClose(4001)
	client.ExpectTCPClosed()
	// The default would wait 5 s for the close frame that never comes.
	waitFor(t, 2*time.Second, "OnClose", func() bool { return rec.closeOf(c.ID()) != nil })
	if ce := rec.closeOf(c.ID()); ce.Code != 4001 || ce.Remote {
		t.Fatalf("OnClose got %+v, want local 4001", ce)
	}
}
