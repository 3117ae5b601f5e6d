package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/internal/wstest"
)

// limitDaemon is the wsd binary run with an admin listener, for the limits
// a client meets end to end.
type limitDaemon struct {
	*wstest.Daemon
	admin string // host:port of the admin listener
}

// startLimitDaemon runs the built wsd with args and an admin listener on a
// free port, and waits until the admin listener answers too.
func startLimitDaemon(t *testing.T, args ...string) *limitDaemon {
	t.Helper()
	admin := wstest.FreeAddr(t)
	d := &limitDaemon{Daemon: wstest.StartDaemon(t, append([]string{"-admin-addr", admin, "-log-level", "error"}, args...)...), admin: admin}
	wstest.WaitFor(t, adminTimeout, "the admin listener", func() bool {
		_, err := d.tryMetrics()
		return err == nil
	})
	return d
}

// tryMetrics reads the daemon's /metrics into "name{labels}" -> value.
func (d *limitDaemon) tryMetrics() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+d.admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	samples := map[string]string{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		if i := bytes.LastIndexByte(line, ' '); i > 0 && line[0] != '#' {
			samples[string(line[:i])] = string(line[i+1:])
		}
	}
	return samples, nil
}

// expectMetric waits until the metric key has the value want: the daemon
// counts a close as it happens, and may count the end of the connection a
// moment after the client has seen it.
func (d *limitDaemon) expectMetric(t *testing.T, key, want string) {
	t.Helper()
	var got string
	deadline := time.Now().Add(adminTimeout)
	for {
		s, err := d.tryMetrics()
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		if got = s[key]; got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, want %s", key, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDaemonBackpressure runs the echo daemon with a small -max-buffered
// and a client that sends without reading: the daemon must close it with
// -backpressure-code instead of buffering without end. The close frame is
// checked when it arrives (it follows the echoes the client has not read,
// and a TCP reset may discard them), and wsd_closed_total and
// wsd_closes_total are checked in every case.
func TestDaemonBackpressure(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"-max-buffered", "64KiB"}, 1008},
		{[]string{"-max-buffered", "64KiB", "-backpressure-code", "1013"}, 1013},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			d := startLimitDaemon(t, append([]string{"-mode", "echo"}, tc.args...)...)
			c := wstest.Dial(t, d.Addr)
			c.Handshake("/")
			frame := wstest.Binary(bytes.Repeat([]byte{'f'}, 16<<10)).Bytes()
			const most = 1 << 30 // far more than the socket buffers and the cap hold
			sent := 0
			for ; sent < most; sent += len(frame) {
				if err := c.TryWrite(frame); err != nil {
					break
				}
			}
			if sent >= most {
				t.Fatalf("the daemon read %d bytes from a client that does not read", sent)
			}
			// What the client can still read: echoes, then maybe the close.
			echoes, closeSeen := 0, false
			for !closeSeen {
				f, err := c.ReadFrame()
				if err != nil {
					break
				}
				echoes++
				if closeSeen = f.Opcode == wstest.OpClose; closeSeen && f.CloseCode() != tc.code {
					t.Errorf("close code %d, want %d", f.CloseCode(), tc.code)
				}
			}
			t.Logf("sent %d bytes, read %d frames, close frame read: %v", sent, echoes, closeSeen)
			d.expectMetric(t, `wsd_closed_total{reason="backpressure"}`, "1")
			d.expectMetric(t, fmt.Sprintf(`wsd_closes_total{code="%d"}`, tc.code), "1")
		})
	}
}

// unreadEcho sends the echo daemon a message far larger than the socket
// buffers hold, and never reads its echo. The write may fail: a limit can
// close the connection before the daemon has read it all (the budget
// counts a message being received too).
func unreadEcho(t *testing.T, d *limitDaemon) {
	c := wstest.Dial(t, d.Addr)
	c.Handshake("/")
	_ = c.TryWrite(wstest.Binary(make([]byte, 32<<20)).Bytes())
}

// TestDaemonLimits has clients break each of the other limits of the
// daemon and checks what they see and the counter that counts it.
func TestDaemonLimits(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		client func(t *testing.T, d *limitDaemon)
		metric string // the counter that must be 1 afterwards
	}{
		{
			name: "message rate, close",
			args: []string{"-mode", "echo", "-max-msg-rate", "0.01", "-max-msg-burst", "2"},
			client: func(t *testing.T, d *limitDaemon) {
				c := wstest.Dial(t, d.Addr)
				c.Handshake("/")
				c.WriteFrames(wstest.Text("1"), wstest.Text("2"), wstest.Text("3"))
				c.ExpectText("1")
				c.ExpectText("2")
				c.ExpectClose(1008)
			},
			metric: `wsd_closed_total{reason="rate_limit"}`,
		},
		{
			name: "message rate, drop",
			args: []string{"-mode", "echo", "-max-msg-rate", "0.01", "-max-msg-burst", "2", "-rate-limit-action", "drop"},
			client: func(t *testing.T, d *limitDaemon) {
				c := wstest.Dial(t, d.Addr)
				c.Handshake("/")
				c.WriteFrames(wstest.Text("1"), wstest.Text("2"), wstest.Text("3"), wstest.Ping([]byte("still open")))
				c.ExpectText("1")
				c.ExpectText("2")
				c.ExpectPong([]byte("still open"))
				c.CloseHandshake()
			},
			metric: "wsd_rate_dropped_total",
		},
		{
			name: "byte rate",
			args: []string{"-mode", "echo", "-max-byte-rate", "1KiB", "-max-message-size", "1KiB"},
			client: func(t *testing.T, d *limitDaemon) {
				c := wstest.Dial(t, d.Addr)
				c.Handshake("/")
				half := string(bytes.Repeat([]byte{'b'}, 512))
				c.WriteFrames(wstest.Text(half), wstest.Text(half), wstest.Text(half))
				c.ExpectText(half)
				c.ExpectText(half)
				c.ExpectClose(1008)
			},
			metric: `wsd_closed_total{reason="rate_limit"}`,
		},
		{
			name: "message timeout",
			args: []string{"-mode", "echo", "-message-timeout", "200ms"},
			client: func(t *testing.T, d *limitDaemon) {
				c := wstest.Dial(t, d.Addr)
				c.Handshake("/")
				c.WriteFrames(wstest.Frag(wstest.OpText, false, []byte("the start of a message that never ends")))
				c.ExpectClose(1008)
			},
			metric: `wsd_closed_total{reason="message_timeout"}`,
		},
		{
			name:   "write timeout",
			args:   []string{"-mode", "echo", "-write-timeout", "300ms", "-max-buffered", "0", "-max-message-size", "64MiB"},
			client: unreadEcho,
			metric: `wsd_closed_total{reason="write_timeout"}`,
		},
		{
			name:   "budget",
			args:   []string{"-mode", "echo", "-max-buffered-total", "1MiB", "-max-buffered", "0", "-max-message-size", "64MiB"},
			client: unreadEcho,
			metric: `wsd_closed_total{reason="budget"}`,
		},
		{
			name: "connections",
			args: []string{"-mode", "echo", "-max-conns", "1"},
			client: func(t *testing.T, d *limitDaemon) {
				// The connection that saw the daemon start has left.
				d.expectMetric(t, "wsd_connections", "0")
				dialFrom(t, d, "127.0.0.2", 101)
				dialFrom(t, d, "127.0.0.3", 503)
			},
			metric: `wsd_rejected_total{reason="max_conns"}`,
		},
		{
			name: "connections per IP",
			args: []string{"-mode", "echo", "-max-conns-per-ip", "1"},
			client: func(t *testing.T, d *limitDaemon) {
				dialFrom(t, d, "127.0.0.2", 101)
				dialFrom(t, d, "127.0.0.2", 429)
				dialFrom(t, d, "127.0.0.3", 101)
			},
			metric: `wsd_rejected_total{reason="per_ip"}`,
		},
		{
			name: "handshake rate per IP",
			args: []string{"-mode", "echo", "-handshake-rate-per-ip", "0.01", "-handshake-burst-per-ip", "2"},
			client: func(t *testing.T, d *limitDaemon) {
				dialFrom(t, d, "127.0.0.2", 101).Close()
				dialFrom(t, d, "127.0.0.2", 101).Close()
				dialFrom(t, d, "127.0.0.2", 429)
				dialFrom(t, d, "127.0.0.3", 101)
			},
			metric: `wsd_rejected_total{reason="rate"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startLimitDaemon(t, tc.args...)
			tc.client(t, d)
			d.expectMetric(t, tc.metric, "1")
		})
	}
}

// dialFrom opens a WebSocket connection to the daemon from the loopback
// address ip (the connection the test harness made to see the daemon
// start came from 127.0.0.1, and counts against that address), and fails
// unless the answer has status: 101, or a refusal with Retry-After. It
// returns the connection, or nil; the connection is closed when the test
// ends.
func dialFrom(t *testing.T, d *limitDaemon, ip string, status int) *websocket.Conn {
	t.Helper()
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: adminTimeout}
	dialer := websocket.Dialer{HandshakeTimeout: adminTimeout, NetDial: nd.Dial}
	c, resp, err := dialer.Dial("ws://"+d.Addr+"/", nil)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		if status != 101 {
			t.Fatalf("from %s: upgraded, want HTTP %d", ip, status)
		}
		return c
	}
	if resp == nil || resp.StatusCode != status || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("from %s: %v, response %+v; want HTTP %d with Retry-After", ip, err, resp, status)
	}
	return nil
}
