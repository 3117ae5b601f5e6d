package engine

import (
	"strings"
	"testing"
	"time"
)

// TestOptionsDefaults: zero means the default, negative turns a timeout or
// limit off, and every error names the field and the value.
func TestOptionsDefaults(t *testing.T) {
	tests := []struct {
		name  string
		in    Options
		check func(o Options) bool
		err   string // substring of the error; "" for none
	}{
		{name: "zero value", check: func(o Options) bool {
			return o.Addrs[0] == DefaultAddr && o.MaxHeaderBytes == DefaultMaxHeaderBytes &&
				o.MaxMessageSize == DefaultMaxMessageSize && o.HandshakeTimeout == DefaultHandshakeTimeout &&
				o.PingInterval == DefaultPingInterval && o.IdleTimeout == DefaultIdleTimeout &&
				o.CloseTimeout == DefaultCloseTimeout && o.Logger != nil
		}},
		{name: "negative turns off", in: Options{MaxMessageSize: -1, HandshakeTimeout: -1, PingInterval: -1, IdleTimeout: -1, CloseTimeout: -1},
			check: func(o Options) bool {
				return o.MaxMessageSize == 0 && o.HandshakeTimeout == 0 && o.PingInterval == 0 && o.IdleTimeout == 0 && o.CloseTimeout == 0
			}},
		{name: "values kept", in: Options{CloseTimeout: time.Second, Addrs: []string{":0", "tcp6://[::1]:9", "unix:///tmp/x.sock"}},
			check: func(o Options) bool {
				return o.CloseTimeout == time.Second && strings.Join(o.Addrs, " ") == "tcp://:0 tcp6://[::1]:9 unix:///tmp/x.sock"
			}},
		{name: "no port", in: Options{Addrs: []string{"bad"}}, err: `address "tcp://bad": want host:port`},
		{name: "port not a number", in: Options{Addrs: []string{"127.0.0.1:http"}}, err: `port "http" is not a number`},
		{name: "port too large", in: Options{Addrs: []string{"tcp4://:65536"}}, err: `port "65536"`},
		{name: "empty port", in: Options{Addrs: []string{"127.0.0.1:"}}, err: `port ""`},
		{name: "unknown scheme", in: Options{Addrs: []string{"udp://:1"}}, err: "scheme must be"},
		{name: "unix without path", in: Options{Addrs: []string{"unix://"}}, err: "no host:port or path"},
		{name: "idle within ping", in: Options{PingInterval: time.Second, IdleTimeout: time.Second}, err: "IdleTimeout (1s) must exceed PingInterval (1s)"},
		{name: "small header cap", in: Options{MaxHeaderBytes: 100}, err: "MaxHeaderBytes 100 is below 256"},
		{name: "negative loops", in: Options{EventLoops: -1}, err: "EventLoops must not be negative"},
		{name: "bad subprotocol", in: Options{Subprotocols: []string{"a b"}}, err: `subprotocol "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.in.withDefaults()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			case tt.err == "" && !tt.check(o):
				t.Fatalf("options after defaults: %+v", o)
			}
		})
	}
}
