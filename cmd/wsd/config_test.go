package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "wsd.yaml")
	err := os.WriteFile(file, []byte(`
addr: [127.0.0.1:7000, "unix:///tmp/x.sock"]
mode: echo
max_message_size: 1MiB
ping_interval: 5s
idle_timeout: 30s
subprotocols: [a, b]
log_level: warn
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSD_IDLE_TIMEOUT", "45s")
	t.Setenv("WSD_LOG_LEVEL", "debug")

	c, err := loadConfig([]string{"-config", file, "-log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file list", c.Addr, "127.0.0.1:7000,unix:///tmp/x.sock"},
		{"file size with unit", int64(c.MaxMessageSize), int64(1 << 20)},
		{"file duration", c.PingInterval, 5 * time.Second},
		{"env over file", c.IdleTimeout, 45 * time.Second},
		{"flag over env", c.LogLevel, "error"},
		{"default", c.CloseTimeout, 5 * time.Second},
		{"file list of words", c.Subprotocols, "a,b"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	o := engineOptions(c, nil)
	if len(o.Addrs) != 2 || len(o.Subprotocols) != 2 || o.MaxMessageSize != 1<<20 {
		t.Errorf("engine options %+v", o)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(s string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		args []string
		env  [2]string
		want string
	}{
		{"unknown key", []string{"-config", write("no_such_key: 1\n")}, [2]string{}, "unknown key"},
		{"bad yaml", []string{"-config", write("addr: [\n")}, [2]string{}, "c2.yaml"},
		{"bad env duration", nil, [2]string{"WSD_PING_INTERVAL", "soon"}, "WSD_PING_INTERVAL"},
		{"bad size", []string{"-max-message-size", "12XB"}, [2]string{}, "invalid size"},
		{"stray argument", []string{"serve"}, [2]string{}, "unexpected argument"},
		{"missing file", []string{"-config", filepath.Join(dir, "none.yaml")}, [2]string{}, "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env[0] != "" {
				t.Setenv(tt.env[0], tt.env[1])
			}
			_, err := loadConfig(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "65536": 65536, "16MiB": 16 << 20, "8 KiB": 8 << 10, "1G": 1 << 30, "2MB": 2 << 20} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: got %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1.5MiB", "ten"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestEngineOptionsOffMeansOff(t *testing.T) {
	c, err := loadConfig([]string{"-ping-interval", "0", "-idle-timeout", "0", "-handshake-timeout", "0", "-max-message-size", "0"})
	if err != nil {
		t.Fatal(err)
	}
	o := engineOptions(c, nil)
	if o.PingInterval >= 0 || o.IdleTimeout >= 0 || o.HandshakeTimeout >= 0 || o.MaxMessageSize >= 0 {
		t.Fatalf("0 must turn features off (negative in engine.Options): %+v", o)
	}
}
