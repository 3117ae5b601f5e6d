package engine_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/internal/wstest"
)

// timerConn sets timers as its client asks: "in N ms", "cancel", and
// writes "fired N" at each OnTimer, re-arming for "again" times.
type timerConn struct {
	engine.NopHandler
	fired atomic.Int64
	again int
	every time.Duration
	first time.Duration
}

func (h *timerConn) OnOpen(c *engine.Conn) {
	if h.first > 0 {
		c.SetTimer(time.Now().Add(h.first))
	}
}

func (h *timerConn) OnMessage(c *engine.Conn, _ codec.OpCode, p []byte) {
	switch string(p) {
	case "cancel":
		c.SetTimer(time.Time{})
	case "later":
		c.SetTimer(time.Now().Add(400 * time.Millisecond))
	}
	_ = c.Write(codec.OpText, append([]byte("ok "), p...))
}

func (h *timerConn) OnTimer(c *engine.Conn) {
	n := h.fired.Add(1)
	_ = c.Write(codec.OpText, []byte("fired"))
	if int(n) <= h.again {
		c.SetTimer(time.Now().Add(h.every))
	}
}

// TestConnTimer: Conn.SetTimer fires OnTimer once at about its time (on the
// engine's tick), with pings and the idle timeout off or on; SetTimer
// again replaces it, a zero time cancels it, OnTimer may re-arm it, and a
// closed connection's timer does not fire.
func TestConnTimer(t *testing.T) {
	cases := []struct {
		name  string
		h     *timerConn
		opts  engine.Options
		do    func(t *testing.T, c *wstest.Client, start time.Time)
		fires int64
	}{
		{"fires once", &timerConn{first: 200 * time.Millisecond}, engine.Options{PingInterval: -1, IdleTimeout: -1}, func(t *testing.T, c *wstest.Client, start time.Time) {
			c.ExpectText("fired")
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Fatalf("fired after %v, before its time", d)
			}
			c.ExpectSilence(400 * time.Millisecond)
		}, 1},
		{"with pings", &timerConn{first: 200 * time.Millisecond}, engine.Options{PingInterval: 10 * time.Second, IdleTimeout: 30 * time.Second}, func(t *testing.T, c *wstest.Client, start time.Time) {
			c.ExpectText("fired")
		}, 1},
		{"replaced", &timerConn{first: 200 * time.Millisecond}, engine.Options{PingInterval: -1, IdleTimeout: -1}, func(t *testing.T, c *wstest.Client, start time.Time) {
			c.WriteFrames(wstest.Text("later"))
			c.ExpectText("ok later")
			c.ExpectText("fired")
			if d := time.Since(start); d < 350*time.Millisecond {
				t.Fatalf("fired after %v: the first time was not replaced", d)
			}
		}, 1},
		{"cancelled", &timerConn{first: 200 * time.Millisecond}, engine.Options{PingInterval: -1, IdleTimeout: -1}, func(t *testing.T, c *wstest.Client, start time.Time) {
			c.WriteFrames(wstest.Text("cancel"))
			c.ExpectText("ok cancel")
			c.ExpectSilence(500 * time.Millisecond)
		}, 0},
		{"re-armed", &timerConn{first: 50 * time.Millisecond, again: 2, every: 50 * time.Millisecond}, engine.Options{PingInterval: -1, IdleTimeout: -1}, func(t *testing.T, c *wstest.Client, start time.Time) {
			for range 3 {
				c.ExpectText("fired")
			}
			c.ExpectSilence(300 * time.Millisecond)
		}, 3},
		{"closed first", &timerConn{first: 300 * time.Millisecond}, engine.Options{PingInterval: -1, IdleTimeout: -1}, func(t *testing.T, c *wstest.Client, start time.Time) {
			c.CloseHandshake()
			time.Sleep(500 * time.Millisecond) // past the timer's time: nothing to wait for but time itself
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startEngine(t, tc.h, tc.opts)
			start := time.Now()
			c := wstest.Connect(t, addr)
			tc.do(t, c, start)
			if got := tc.h.fired.Load(); got != tc.fires {
				t.Fatalf("OnTimer ran %d times, want %d", got, tc.fires)
			}
		})
	}
}
