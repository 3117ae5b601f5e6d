package engine_test

import (
	"testing"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// Under a cap, the kernel keeps at most an eighth of it (128 KiB at most)
// unsent for a peer that does not read; the rest waits in the engine, where
// the cap counts it. Without TCP_NOTSENT_LOWAT Linux takes megabytes
// (tcp_wmem), and a flooder's input is decoded and answered all that time.
func TestLimitsKernelUnsent(t *testing.T) {
	for _, tc := range []struct {
		max, lowat int
	}{
		{engine.DefaultMaxBuffered, 128 << 10},
		{1 << 19, 64 << 10},
		{1 << 16, 16 << 10}, // the floor
	} {
		f := newFiller()
		_, addr := startEngine(t, f, noTimers(engine.Options{MaxBuffered: tc.max, EventLoops: 1}))
		client := wstest.Connect(t, addr)
		f.next(t)
		server := wstest.ServerSocketOf(t, client.Conn)
		backlog := f.fill(t, client, tc.max*3/4)
		// The kernel refuses more once lowat bytes are unsent, checking
		// before each packet it builds: one packet (64 KiB on loopback)
		// may pass it.
		const packet = 64 << 10
		notsent := int(server.Info(t).Notsent_bytes)
		t.Logf("cap %d KiB: %d KiB unsent in the kernel, %d KiB in the engine", tc.max>>10, notsent>>10, backlog>>10)
		if notsent > tc.lowat+packet {
			t.Errorf("cap %d: the kernel holds %d bytes unsent, want at most %d (TCP_NOTSENT_LOWAT %d, plus a packet)", tc.max, notsent, tc.lowat+packet, tc.lowat)
		}
		if backlog < tc.max*3/4 {
			t.Errorf("cap %d: the engine holds %d bytes unsent, want at least %d", tc.max, backlog, tc.max*3/4)
		}
		client.Conn.Close()
	}
}
