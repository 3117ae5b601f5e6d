package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// writeConfig writes a config file named name in a temporary directory and
// returns its path.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "wsd.yaml", `
addr: [127.0.0.1:7000, "unix:///tmp/x.sock"]
mode: echo
max_message_size: 1MiB
ping_interval: 5s
idle_timeout: 30s
subprotocols: [a, b]
log_level: warn
reuse_port: no
`)
	env := []string{"WSD_IDLE_TIMEOUT=45s", "WSD_LOG_LEVEL=debug", "HOME=/nowhere"}
	c, warnings, err := loadConfig([]string{"-config", file, "-log-level", "error"}, env)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("error %v, warnings %q", err, warnings)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file list", c.Addr, "127.0.0.1:7000,unix:///tmp/x.sock"},
		{"file size with unit", c.MaxMessageSize, int64(1 << 20)},
		{"file duration", c.PingInterval, 5 * time.Second},
		{"env over file", c.IdleTimeout, 45 * time.Second},
		{"flag over env", c.LogLevel, "error"},
		{"file boolean no", c.ReusePort, false},
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

// TestConfigExampleFile loads configs/wsd.yaml, which must stay valid and
// hold the defaults.
func TestConfigExampleFile(t *testing.T) {
	c, _, err := loadConfig([]string{"-config", "../../configs/wsd.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := loadConfig(nil, nil)
	c.ConfigFile, c.from, d.from = "", nil, nil
	d.ReusePort = c.ReusePort // its default depends on the OS
	if !reflect.DeepEqual(c, d) {
		t.Errorf("configs/wsd.yaml does not hold the defaults:\n file     %+v\n defaults %+v", *c, *d)
	}
}

// TestConfigSizes covers sizes: units, and refusing negative sizes, sizes
// that overflow int64 and sizes over the largest value of their field.
func TestConfigSizes(t *testing.T) {
	cases := []struct {
		in   string
		max  int64
		want int64 // -1: refused
	}{
		{"0", math.MaxInt64, 0},
		{"65536", math.MaxInt64, 65536},
		{"16MiB", math.MaxInt64, 16 << 20},
		{"8 KiB", math.MaxInt64, 8 << 10},
		{"1G", math.MaxInt64, 1 << 30},
		{"2MB", math.MaxInt64, 2 << 20},
		{"9223372036854775807", math.MaxInt64, math.MaxInt64},
		{"8589934591G", math.MaxInt64, 8589934591 << 30},
		{"8589934592G", math.MaxInt64, -1},  // 2^63: one over
		{"17179869184G", math.MaxInt64, -1}, // 2^64: wraps to 0 if unchecked
		{"9223372036854775808", math.MaxInt64, -1},
		{"99999999999999999999KiB", math.MaxInt64, -1},
		{"2147483647", math.MaxInt32, math.MaxInt32}, // an int field on 32 bits
		{"2147483648", math.MaxInt32, -1},
		{"2GiB", math.MaxInt32, -1},
		{"2047MiB", math.MaxInt32, 2047 << 20},
		{"", math.MaxInt64, -1},
		{"-1", math.MaxInt64, -1},
		{"-1KiB", math.MaxInt64, -1},
		{"MiB", math.MaxInt64, -1},
		{"1.5MiB", math.MaxInt64, -1},
		{"ten", math.MaxInt64, -1},
		{"12XB", math.MaxInt64, -1},
	}
	for _, tc := range cases {
		n, err := parseSize(tc.in, tc.max)
		switch {
		case tc.want < 0 && err == nil:
			t.Errorf("parseSize(%q, %d) = %d, want an error", tc.in, tc.max, n)
		case tc.want >= 0 && (err != nil || n != tc.want):
			t.Errorf("parseSize(%q, %d) = %d, %v; want %d", tc.in, tc.max, n, err, tc.want)
		}
	}

	// The sizes that engine.Options and broadcast.Options take as an int
	// are bounded by math.MaxInt; the message size by math.MaxInt64.
	fs := newFlagSet(new(config))
	for name, max := range map[string]int64{"max-message-size": math.MaxInt64, "max-header-bytes": math.MaxInt, "max-buffered": math.MaxInt} {
		if v := fs.Lookup(name).Value.(*sizeValue); v.max != max {
			t.Errorf("-%s: max %d, want %d", name, v.max, max)
		}
	}
	_, _, err := loadConfig([]string{"-max-message-size", "17179869184G"}, nil)
	if want := `-max-message-size: invalid size "17179869184G": want at most 9223372036854775807 bytes`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestConfigErrors checks that every refused configuration names the
// flag, variable or key, the value, and what is expected.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		file string // content of c.yaml, passed with -config if not empty
		want []string
	}{
		// The same setting from each source.
		{"flag duration", []string{"-ping-interval", "abc"}, nil, "",
			[]string{`-ping-interval: invalid duration "abc": want a Go duration like 20s or 1m`}},
		{"env duration", nil, []string{"WSD_PING_INTERVAL=abc"}, "",
			[]string{`-ping-interval: invalid duration "abc" (from WSD_PING_INTERVAL): want a Go duration like 20s or 1m`}},
		{"env duration without a unit", nil, []string{"WSD_PING_INTERVAL=20"}, "",
			[]string{`-ping-interval: invalid duration "20" (from WSD_PING_INTERVAL): want a duration with a unit, like 20s`}},
		{"file duration without a unit", nil, nil, "mode: chat\nping_interval: 20\n",
			[]string{`c.yaml:2: ping_interval: invalid duration "20": want a duration with a unit, like 20s`}},
		{"file boolean", nil, nil, "reuse_port: maybe\n",
			[]string{`c.yaml:1: reuse_port: invalid boolean "maybe": want true or false (or yes/no, on/off, 1/0)`}},
		{"flag boolean", []string{"-reuse-port=maybe"}, nil, "",
			[]string{`-reuse-port: invalid boolean "maybe": want true or false (or yes/no, on/off, 1/0)`}},
		{"negative duration", []string{"-close-timeout", "-1s"}, nil, "",
			[]string{`-close-timeout: invalid duration "-1s": want 0 (off) or a positive duration like 20s`}},

		// Single settings out of range.
		{"event loops", []string{"-event-loops", "-1"}, nil, "",
			[]string{`-event-loops: invalid event loop count "-1": want 0 (one per CPU) or more`}},
		{"event loops not a number", []string{"-event-loops", "two"}, nil, "",
			[]string{`-event-loops: invalid event loop count "two": want 0 (one per CPU) or more`}},
		{"header bytes", []string{"-max-header-bytes", "255"}, nil, "",
			[]string{`-max-header-bytes: invalid size "255": want at least 256 bytes`}},
		{"header bytes off", []string{"-max-header-bytes", "0"}, nil, "",
			[]string{`-max-header-bytes: invalid size "0": want at least 256 bytes`}},
		{"bad size", []string{"-max-buffered", "12XB"}, nil, "",
			[]string{`-max-buffered: invalid size "12XB": want a number of bytes, or one with a KiB, MiB or GiB suffix, like 16MiB`}},
		{"slow close code", []string{"-slow-close-code", "1000"}, nil, "",
			[]string{`-slow-close-code: invalid close code "1000": want 1008 (policy violation), 1013 (try again later) or an application code 3000-4999`}},
		{"slow close code out of range", []string{"-slow-close-code", "5000"}, nil, "", []string{`-slow-close-code: invalid close code "5000"`}},
		{"slow policy", []string{"-slow-policy", "kick"}, nil, "", []string{`-slow-policy: invalid slow policy "kick": want drop or close`}},
		{"mode", []string{"-mode", "nope"}, nil, "", []string{`-mode: invalid mode "nope": want chat, push or echo`}},
		{"log level", []string{"-log-level", "loud"}, nil, "", []string{`-log-level: invalid log level "loud": want debug, info, warn or error`}},
		{"log format", nil, []string{"WSD_LOG_FORMAT=xml"}, "", []string{`-log-format: invalid log format "xml" (from WSD_LOG_FORMAT): want console or json`}},
		{"subprotocol", []string{"-subprotocols", "chat,bad proto"}, nil, "", []string{`-subprotocols: invalid subprotocol "bad proto": want a token`}},
		{"key exchange", []string{"-tls-curves", "X25519,ffdhe2048"}, nil, "",
			[]string{`-tls-curves: invalid key exchange "ffdhe2048": want X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, CurveP256, CurveP384 or CurveP521 (in any case)`}},

		// Addresses.
		{"addr without port", []string{"-addr", "bad"}, nil, "", []string{`-addr: invalid address "bad": want host:port (port 1-65535), tcp://host:port`}},
		{"addr port 0", []string{"-addr", "127.0.0.1:0"}, nil, "", []string{`-addr: invalid address "127.0.0.1:0"`}},
		{"addr port not a number", []string{"-addr", "tcp://localhost:http"}, nil, "", []string{`-addr: invalid address "tcp://localhost:http"`}},
		{"addr port too large", []string{"-addr", "tcp://:65536"}, nil, "", []string{`-addr: invalid address "tcp://:65536"`}},
		{"addr scheme", []string{"-addr", "udp://:8080"}, nil, "", []string{`-addr: invalid address "udp://:8080"`}},
		{"addr unix without a path", []string{"-addr", "unix://"}, nil, "", []string{`-addr: invalid address "unix://"`}},
		{"second addr", []string{"-addr", "127.0.0.1:8080,8081"}, nil, "", []string{`-addr: invalid address "8081"`}},
		{"no addr", []string{"-addr", " , "}, nil, "", []string{`-addr: invalid address list " , ": want host:port`}},
		{"admin addr", []string{"-admin-addr", "localhost"}, nil, "", []string{`-admin-addr: invalid address "localhost": want host:port (port 0-65535, 0 for any free port), or nothing to turn the admin listener off`}},
		{"addr in file", nil, nil, "addr: [127.0.0.1:8080, \"nope\"]\n", []string{`c.yaml:1: addr: invalid address "nope"`}},

		// Relations between settings, with where each value came from.
		{"idle timeout not over ping interval", []string{"-idle-timeout", "20s"}, nil, "",
			[]string{`-idle-timeout 20s must exceed -ping-interval 20s (the default), or a silent peer is closed before it is pinged (0 turns either off)`}},
		{"idle timeout from env", []string{"-ping-interval", "30s"}, []string{"WSD_IDLE_TIMEOUT=10s"}, "",
			[]string{`-idle-timeout 10s (from WSD_IDLE_TIMEOUT) must exceed -ping-interval 30s, or`}},
		{"idle timeout from file", nil, nil, "ping_interval: 30s\nidle_timeout: 30s\n",
			[]string{`-idle-timeout 30s (from c.yaml:2: idle_timeout) must exceed -ping-interval 30s (from c.yaml:1: ping_interval)`}},
		{"burst without a rate", []string{"-max-msg-burst", "10"}, nil, "",
			[]string{`-max-msg-burst 10 needs -max-msg-rate: a burst is of a rate, and -max-msg-rate is 0 (off)`}},
		{"burst from env without a rate", nil, []string{"WSD_MAX_MSG_BURST=10"}, "",
			[]string{`-max-msg-burst 10 (from WSD_MAX_MSG_BURST) needs -max-msg-rate`}},
		{"burst with the rate turned off", []string{"-max-msg-rate", "0"}, nil, "max_msg_rate: 5\nmax_msg_burst: 10\n",
			[]string{`-max-msg-burst 10 (from c.yaml:2: max_msg_burst) needs -max-msg-rate`}},
		{"handshake burst without a rate", []string{"-handshake-burst-per-ip", "5"}, nil, "",
			[]string{`-handshake-burst-per-ip 5 needs -handshake-rate-per-ip: a burst is of a rate, and -handshake-rate-per-ip is 0 (off)`}},
		{"both bursts without rates", []string{"-handshake-burst-per-ip", "5", "-max-msg-burst", "3"}, nil, "",
			[]string{`-max-msg-burst 3 needs -max-msg-rate`, `-handshake-burst-per-ip 5 needs -handshake-rate-per-ip`}},

		// Several problems are all reported.
		{"several", []string{"-mode", "nope", "-log-level", "loud"}, []string{"WSD_PING_INTERVAL=x"}, "",
			[]string{`-log-level: invalid log level "loud"`, `-mode: invalid mode "nope"`, `-ping-interval: invalid duration "x" (from WSD_PING_INTERVAL)`}},

		// The command line and the file themselves.
		{"unknown flag", []string{"-ping-intervall", "5s"}, nil, "", []string{`unknown flag -ping-intervall (did you mean -ping-interval?); see wsd -h`}},
		{"stray argument", []string{"serve"}, nil, "", []string{`unexpected argument "serve": wsd takes only flags`}},
		{"flag without a value", []string{"-addr"}, nil, "", []string{`flag needs an argument: -addr`}},
		{"unknown key", nil, nil, "ping_intervall: 5s\n", []string{`c.yaml:1: ping_intervall: unknown key (did you mean ping_interval?)`}},
		{"unknown key, nothing close", nil, nil, "color: blue\n", []string{`c.yaml:1: color: unknown key`}},
		{"config key in the file", nil, nil, "config: other.yaml\n", []string{`c.yaml:1: config: unknown key`}},
		{"key twice", nil, nil, "mode: chat\nmode: echo\n", []string{`c.yaml:2: mode: given twice (first on line 1)`}},
		{"list for a single value", nil, nil, "ping_interval: [1s, 2s]\n", []string{`c.yaml:1: ping_interval: want a single value, not a list`}},
		{"mapping for a value", nil, nil, "ping_interval: {a: 1}\n", []string{`c.yaml:1: ping_interval: want a value, not a mapping`}},
		{"list of lists", nil, nil, "origins: [[a]]\n", []string{`c.yaml:1: origins: line 1: want a list of plain values`}},
		{"not a mapping", nil, nil, "- a\n- b\n", []string{`c.yaml:1: want a mapping of settings, like ping_interval: 20s`}},
		{"bad yaml", nil, nil, "addr: [\n", []string{`c.yaml: yaml: `}},
		{"several file problems", nil, nil, "colour: x\nmode: nope\nping_interval: 1\n",
			[]string{`c.yaml:1: colour: unknown key`, `c.yaml:2: mode: invalid mode "nope"`, `c.yaml:3: ping_interval: invalid duration "1"`}},
		{"missing file", []string{"-config", "/nonexistent/wsd.yaml"}, nil, "", []string{`-config: open /nonexistent/wsd.yaml: no such file or directory`}},
		{"missing file from env", nil, []string{"WSD_CONFIG=/nonexistent/wsd.yaml"}, "", []string{`-config (from WSD_CONFIG): open /nonexistent/wsd.yaml: no such file or directory`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
				t.Chdir(dir) // so that the errors name "c.yaml"
				args = append([]string{"-config", "c.yaml"}, args...)
			}
			_, _, err := loadConfig(args, tc.env)
			wantConfigErrors(t, err, tc.want)
		})
	}
}

// wantConfigErrors checks that err has the lines want, each starting as
// given, in order.
func wantConfigErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, lines[min(i, len(lines)-1)], w)
		}
	}
}

// TestConfigBooleans checks the boolean forms each source takes, YAML 1.1's
// yes/no and on/off included.
func TestConfigBooleans(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"true", true}, {"false", false}, {"yes", true}, {"no", false}, {"on", true}, {"off", false},
		{"Yes", true}, {"OFF", false}, {"1", true}, {"0", false}, {"True", true},
	} {
		file := writeConfig(t, "b.yaml", "pprof: "+tc.text+"\nskip_sender: "+tc.text+"\n")
		sources := map[string]struct{ args, env []string }{
			"flag": {[]string{"-pprof=" + tc.text, "-skip-sender=" + tc.text}, nil},
			"env":  {nil, []string{"WSD_PPROF=" + tc.text, "WSD_SKIP_SENDER=" + tc.text}},
			"file": {[]string{"-config", file}, nil},
		}
		for name, src := range sources {
			c, _, err := loadConfig(src.args, src.env)
			if err != nil || c.Pprof != tc.want || c.SkipSender != tc.want {
				t.Errorf("%s %q: pprof %v, skip-sender %v, error %v; want %v", name, tc.text, c != nil && c.Pprof, c != nil && c.SkipSender, err, tc.want)
			}
		}
	}
	c, _, err := loadConfig([]string{"-pprof"}, []string{"WSD_PPROF=no"})
	if err != nil || !c.Pprof {
		t.Errorf("a bare -pprof: %v, %v; want true", c != nil && c.Pprof, err)
	}
}

// TestConfigEnvWarnings checks that WSD_ variables that name no flag are
// reported, with the closest name when one is close.
func TestConfigEnvWarnings(t *testing.T) {
	env := []string{
		"WSD_PING_INTERVALL=5s", "WSD_IDLE_TIMEOUT=45s", "WSD_COLOUR=blue", "wsd_mode=echo",
		"WSD_ping_interval=1s", "PATH=/bin", "WSD_CONFIG=",
	}
	c, warnings, err := loadConfig(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"environment variable WSD_PING_INTERVALL is not a wsd setting and is ignored (did you mean WSD_PING_INTERVAL?)",
		"environment variable WSD_COLOUR is not a wsd setting and is ignored",
		"environment variable WSD_ping_interval is not a wsd setting and is ignored (did you mean WSD_PING_INTERVAL?)",
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	if c.PingInterval != 20*time.Second || c.IdleTimeout != 45*time.Second || c.Mode != "chat" {
		t.Errorf("ping %v, idle %v, mode %q: misspelled variables must not count", c.PingInterval, c.IdleTimeout, c.Mode)
	}
}

// TestConfigUsage checks that -h is flag.ErrHelp and that the usage shows
// every flag with its default.
func TestConfigUsage(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		if _, _, err := loadConfig([]string{arg}, nil); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: %v, want flag.ErrHelp", arg, err)
		}
	}
	var b bytes.Buffer
	printUsage(&b)
	newFlagSet(new(config)).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(b.String(), "\n  -"+f.Name+" ") && !strings.Contains(b.String(), "\n  -"+f.Name+"\n") {
			t.Errorf("usage does not show -%s", f.Name)
		}
	})
	for _, want := range []string{"-ping-interval duration (default 20s)", "-max-message-size size (default 16MiB)", "-addr list (default 127.0.0.1:8080)", "WSD_PING_INTERVAL",
		"-max-buffered size (default 1MiB)", "-max-msg-rate rate (default 0)", "-max-subscriptions int (default 256)",
		"-max-buffered-total size (default " + formatSize(engine.DefaultMaxBufferedTotal()) + ")", "-backpressure-code int (default 1008)",
		"-compression (default true)", "-compression-level int (default 1)", "-compression-threshold size (default 256)",
		"-compression-client-context-takeover (default false)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage does not show %q:\n%s", want, b.String())
		}
	}
}

// TestConfigZeroMeansOff checks the mapping of the daemon's settings onto
// engine.Options and broadcast.Options: in the daemon 0 turns a limit or a
// timeout off, which those options spell with a negative value (their 0 is
// the default); other values pass through.
func TestConfigZeroMeansOff(t *testing.T) {
	off, _, err := loadConfig([]string{"-ping-interval", "0", "-idle-timeout", "0", "-handshake-timeout", "0", "-close-timeout", "0",
		"-max-message-size", "0", "-max-buffered", "0", "-write-timeout", "0", "-max-buffered-total", "0", "-message-timeout", "0",
		"-max-subscriptions", "0", "-max-queued", "0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, h := engineOptions(off, nil), hubOptions(off)
	for name, v := range map[string]int64{
		"PingInterval": int64(o.PingInterval), "IdleTimeout": int64(o.IdleTimeout), "HandshakeTimeout": int64(o.HandshakeTimeout),
		"CloseTimeout": int64(o.CloseTimeout), "MaxMessageSize": o.MaxMessageSize, "MaxBuffered": int64(o.MaxBuffered),
		"WriteTimeout": int64(o.WriteTimeout), "MaxBufferedTotal": o.MaxBufferedTotal, "MessageTimeout": int64(o.MessageTimeout),
		"broadcast MaxSubscriptions": int64(h.MaxSubscriptions), "broadcast MaxQueued": h.MaxQueued,
	} {
		if v >= 0 {
			t.Errorf("%s = %d, want negative (off)", name, v)
		}
	}
	// The rate limits and the connection caps are off at 0 in
	// engine.Options too.
	if o.MaxMessageRate != 0 || o.MaxMessageBurst != 0 || o.MaxByteRate != 0 || o.RateLimitDrop {
		t.Errorf("rate limits %v, %d, %d, %v; want all off", o.MaxMessageRate, o.MaxMessageBurst, o.MaxByteRate, o.RateLimitDrop)
	}
	if o.MaxConns != 0 || o.MaxConnsPerIP != 0 || o.HandshakeRatePerIP != 0 || o.HandshakeBurstPerIP != 0 {
		t.Errorf("connection limits %d, %d, %v, %d; want all off", o.MaxConns, o.MaxConnsPerIP, o.HandshakeRatePerIP, o.HandshakeBurstPerIP)
	}

	on, _, err := loadConfig([]string{"-ping-interval", "7s", "-idle-timeout", "9s", "-handshake-timeout", "3s", "-close-timeout", "2s",
		"-max-message-size", "1KiB", "-max-buffered", "2KiB", "-max-header-bytes", "300", "-event-loops", "0",
		"-slow-policy", "close", "-slow-close-code", "1013"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, h = engineOptions(on, nil), hubOptions(on)
	if o.PingInterval != 7*time.Second || o.IdleTimeout != 9*time.Second || o.HandshakeTimeout != 3*time.Second ||
		o.CloseTimeout != 2*time.Second || o.MaxMessageSize != 1024 || o.MaxHeaderBytes != 300 || o.EventLoops != 0 || o.MaxBuffered != 2048 {
		t.Errorf("engine options %+v", o)
	}
	// -max-buffered is the engine's cap; the hub has none of its own.
	if h.MaxBuffered != 0 || h.CloseCode != 1013 || h.Policy != broadcast.Close {
		t.Errorf("hub options %+v", h)
	}
}

// TestConfigLimitDefaults checks what the limits are when nothing is
// given, as the engine and the hub get them.
func TestConfigLimitDefaults(t *testing.T) {
	c, _, err := loadConfig(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, h := engineOptions(c, nil), hubOptions(c)
	checks := []struct {
		name      string
		got, want any
	}{
		{"MaxBuffered", o.MaxBuffered, 1 << 20},
		{"BackpressureCode", o.BackpressureCode, codec.StatusPolicyViolation},
		{"WriteTimeout", o.WriteTimeout, 30 * time.Second},
		{"MaxBufferedTotal", o.MaxBufferedTotal, engine.DefaultMaxBufferedTotal()},
		{"MessageTimeout", o.MessageTimeout, 60 * time.Second},
		{"MaxMessageRate", o.MaxMessageRate, 0.0},
		{"MaxMessageBurst", o.MaxMessageBurst, 0},
		{"MaxByteRate", o.MaxByteRate, int64(0)},
		{"RateLimitDrop", o.RateLimitDrop, false},
		{"MaxConns", o.MaxConns, 0},
		{"MaxConnsPerIP", o.MaxConnsPerIP, 0},
		{"HandshakeRatePerIP", o.HandshakeRatePerIP, 0.0},
		{"HandshakeBurstPerIP", o.HandshakeBurstPerIP, 0},
		{"broadcast MaxBuffered", h.MaxBuffered, 0},
		{"broadcast Policy", h.Policy, broadcast.Drop},
		{"broadcast CloseCode", h.CloseCode, codec.StatusPolicyViolation},
		{"broadcast MaxSubscriptions", h.MaxSubscriptions, 256},
		{"broadcast MaxQueued", h.MaxQueued, int64(64 << 20)},
		{"Compression", o.Compression, engine.Compression{Level: 1, Threshold: 256}},
		{"broadcast CompressThreshold", h.CompressThreshold, 256},
		{"broadcast CompressLevel", h.CompressLevel, 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// TestConfigLimits sets each limit, and each compression setting, from
// each source (flag, environment, config file) and checks the value the engine or the hub gets, or, for a
// value wsd refuses, the error, which names the setting as it was given.
func TestConfigLimits(t *testing.T) {
	type opts struct {
		e engine.Options
		h broadcast.Options
	}
	const (
		sizeWant     = "want a number of bytes, or one with a KiB, MiB or GiB suffix, like 16MiB"
		durationWant = "want a Go duration like 20s or 1m"
		rateWant     = "want 0 (off) or a number per second, like 100 or 0.5"
	)
	cases := []struct {
		flag, text string
		extra      []string // more flags, given on the command line
		get        func(opts) any
		want       any    // the option's value, for a text wsd takes
		kind, why  string // for a text wsd refuses: "invalid KIND "TEXT": WHY"
	}{
		{flag: "max-buffered", text: "64KiB", get: func(o opts) any { return o.e.MaxBuffered }, want: 64 << 10},
		{flag: "max-buffered", text: "0", get: func(o opts) any { return o.e.MaxBuffered }, want: -1},
		{flag: "max-buffered", text: "64KiB", get: func(o opts) any { return o.h.MaxBuffered }, want: 0},
		{flag: "max-buffered", text: "-1", kind: "size", why: sizeWant},

		{flag: "backpressure-code", text: "1013", get: func(o opts) any { return o.e.BackpressureCode }, want: codec.StatusTryAgainLater},
		{flag: "backpressure-code", text: "1008", get: func(o opts) any { return o.e.BackpressureCode }, want: codec.StatusPolicyViolation},
		{flag: "backpressure-code", text: "4000", get: func(o opts) any { return o.e.BackpressureCode }, want: codec.StatusCode(4000)},
		{flag: "backpressure-code", text: "1000", kind: "close code", why: closeCodeWant},
		{flag: "backpressure-code", text: "1011", kind: "close code", why: closeCodeWant},
		{flag: "backpressure-code", text: "5000", kind: "close code", why: closeCodeWant},
		{flag: "backpressure-code", text: "policy", kind: "close code", why: closeCodeWant},

		{flag: "write-timeout", text: "5s", get: func(o opts) any { return o.e.WriteTimeout }, want: 5 * time.Second},
		{flag: "write-timeout", text: "0", get: func(o opts) any { return o.e.WriteTimeout }, want: time.Duration(-1)},
		{flag: "write-timeout", text: "5", kind: "duration", why: "want a duration with a unit, like 20s"},
		{flag: "write-timeout", text: "-5s", kind: "duration", why: "want 0 (off) or a positive duration like 20s"},

		{flag: "max-buffered-total", text: "512MiB", get: func(o opts) any { return o.e.MaxBufferedTotal }, want: int64(512 << 20)},
		{flag: "max-buffered-total", text: "0", get: func(o opts) any { return o.e.MaxBufferedTotal }, want: int64(-1)},
		{flag: "max-buffered-total", text: "lots", kind: "size", why: sizeWant},

		{flag: "message-timeout", text: "2m", get: func(o opts) any { return o.e.MessageTimeout }, want: 2 * time.Minute},
		{flag: "message-timeout", text: "0", get: func(o opts) any { return o.e.MessageTimeout }, want: time.Duration(-1)},
		{flag: "message-timeout", text: "soon", kind: "duration", why: durationWant},

		{flag: "max-msg-rate", text: "100", get: func(o opts) any { return o.e.MaxMessageRate }, want: 100.0},
		{flag: "max-msg-rate", text: "0.5", get: func(o opts) any { return o.e.MaxMessageRate }, want: 0.5},
		{flag: "max-msg-rate", text: "0", get: func(o opts) any { return o.e.MaxMessageRate }, want: 0.0},
		{flag: "max-msg-rate", text: "-1", kind: "rate", why: rateWant},
		{flag: "max-msg-rate", text: "fast", kind: "rate", why: rateWant},
		{flag: "max-msg-rate", text: "Inf", kind: "rate", why: rateWant},
		{flag: "max-msg-rate", text: "NaN", kind: "rate", why: rateWant},
		{flag: "max-msg-rate", text: "1e400", kind: "rate", why: rateWant},

		{flag: "max-msg-burst", text: "10", extra: []string{"-max-msg-rate", "2"}, get: func(o opts) any { return o.e.MaxMessageBurst }, want: 10},
		{flag: "max-msg-burst", text: "0", extra: []string{"-max-msg-rate", "2"}, get: func(o opts) any { return o.e.MaxMessageBurst }, want: 0},
		{flag: "max-msg-burst", text: "-1", kind: "count", why: "want 0 (twice -max-msg-rate) or more"},
		{flag: "max-msg-burst", text: "1.5", kind: "count", why: "want 0 (twice -max-msg-rate) or more"},

		{flag: "max-byte-rate", text: "1MiB", get: func(o opts) any { return o.e.MaxByteRate }, want: int64(1 << 20)},
		{flag: "max-byte-rate", text: "65536", get: func(o opts) any { return o.e.MaxByteRate }, want: int64(65536)},
		{flag: "max-byte-rate", text: "0", get: func(o opts) any { return o.e.MaxByteRate }, want: int64(0)},
		{flag: "max-byte-rate", text: "1.5MiB", kind: "size", why: sizeWant},

		{flag: "rate-limit-action", text: "drop", get: func(o opts) any { return o.e.RateLimitDrop }, want: true},
		{flag: "rate-limit-action", text: "close", get: func(o opts) any { return o.e.RateLimitDrop }, want: false},
		{flag: "rate-limit-action", text: "ignore", kind: "rate limit action", why: "want close or drop"},

		{flag: "max-conns", text: "15000", get: func(o opts) any { return o.e.MaxConns }, want: 15000},
		{flag: "max-conns", text: "0", get: func(o opts) any { return o.e.MaxConns }, want: 0},
		{flag: "max-conns", text: "-1", kind: "count", why: "want 0 (no limit) or more"},
		{flag: "max-conns", text: "10k", kind: "count", why: "want 0 (no limit) or more"},

		{flag: "max-conns-per-ip", text: "100", get: func(o opts) any { return o.e.MaxConnsPerIP }, want: 100},
		{flag: "max-conns-per-ip", text: "0", get: func(o opts) any { return o.e.MaxConnsPerIP }, want: 0},
		{flag: "max-conns-per-ip", text: "-5", kind: "count", why: "want 0 (no limit) or more"},

		{flag: "handshake-rate-per-ip", text: "10", get: func(o opts) any { return o.e.HandshakeRatePerIP }, want: 10.0},
		{flag: "handshake-rate-per-ip", text: "0.2", get: func(o opts) any { return o.e.HandshakeRatePerIP }, want: 0.2},
		{flag: "handshake-rate-per-ip", text: "0", get: func(o opts) any { return o.e.HandshakeRatePerIP }, want: 0.0},
		{flag: "handshake-rate-per-ip", text: "-0.5", kind: "rate", why: rateWant},
		{flag: "handshake-rate-per-ip", text: "+Inf", kind: "rate", why: rateWant},

		{flag: "handshake-burst-per-ip", text: "20", extra: []string{"-handshake-rate-per-ip", "1"}, get: func(o opts) any { return o.e.HandshakeBurstPerIP }, want: 20},
		{flag: "handshake-burst-per-ip", text: "0", extra: []string{"-handshake-rate-per-ip", "1"}, get: func(o opts) any { return o.e.HandshakeBurstPerIP }, want: 0},
		{flag: "handshake-burst-per-ip", text: "-1", kind: "count", why: "want 0 (twice -handshake-rate-per-ip, at least 1) or more"},

		{flag: "slow-policy", text: "close", get: func(o opts) any { return o.h.Policy }, want: broadcast.Close},
		{flag: "slow-close-code", text: "1013", get: func(o opts) any { return o.h.CloseCode }, want: codec.StatusTryAgainLater},

		{flag: "max-subscriptions", text: "10", get: func(o opts) any { return o.h.MaxSubscriptions }, want: 10},
		{flag: "max-subscriptions", text: "0", get: func(o opts) any { return o.h.MaxSubscriptions }, want: -1},
		{flag: "max-subscriptions", text: "-1", kind: "count", why: "want 0 (no limit) or more"},

		{flag: "max-queued", text: "1MiB", get: func(o opts) any { return o.h.MaxQueued }, want: int64(1 << 20)},
		{flag: "max-queued", text: "0", get: func(o opts) any { return o.h.MaxQueued }, want: int64(-1)},
		{flag: "max-queued", text: "-1", kind: "size", why: sizeWant},

		{flag: "compression", text: "off", get: func(o opts) any { return o.e.Compression.Off }, want: true},
		{flag: "compression", text: "false", get: func(o opts) any { return o.e.Compression.Off }, want: true},
		{flag: "compression", text: "on", get: func(o opts) any { return o.e.Compression.Off }, want: false},
		{flag: "compression", text: "deflate", kind: "boolean", why: "want true or false (or yes/no, on/off, 1/0)"},

		{flag: "compression-level", text: "9", get: func(o opts) any { return o.e.Compression.Level }, want: 9},
		{flag: "compression-level", text: "6", get: func(o opts) any { return o.h.CompressLevel }, want: 6},
		{flag: "compression-level", text: "0", kind: "compression level", why: "want 1 (fastest) to 9 (smallest)"},
		{flag: "compression-level", text: "10", kind: "compression level", why: "want 1 (fastest) to 9 (smallest)"},
		{flag: "compression-level", text: "best", kind: "compression level", why: "want 1 (fastest) to 9 (smallest)"},

		{flag: "compression-threshold", text: "1KiB", get: func(o opts) any { return o.e.Compression.Threshold }, want: 1024},
		{flag: "compression-threshold", text: "1KiB", get: func(o opts) any { return o.h.CompressThreshold }, want: 1024},
		// 0 is every message, not off: a negative threshold for the engine and the hub alike.
		{flag: "compression-threshold", text: "0", get: func(o opts) any { return o.e.Compression.Threshold }, want: -1},
		{flag: "compression-threshold", text: "0", get: func(o opts) any { return o.h.CompressThreshold }, want: -1},
		{flag: "compression-threshold", text: "1", get: func(o opts) any { return o.h.CompressThreshold }, want: 1},
		{flag: "compression-threshold", text: "-1", kind: "size", why: sizeWant},

		{flag: "compression-client-context-takeover", text: "yes", get: func(o opts) any { return o.e.Compression.ClientContextTakeover }, want: true},
		{flag: "compression-client-context-takeover", text: "0", get: func(o opts) any { return o.e.Compression.ClientContextTakeover }, want: false},
	}
	for _, tc := range cases {
		key, env := strings.ReplaceAll(tc.flag, "-", "_"), envName(tc.flag)
		sources := []struct {
			name      string
			args, env []string
			file      string // content of c.yaml
			errText   string // the error for a refused text
		}{
			{"flag", []string{"-" + tc.flag + "=" + tc.text}, nil, "", // "=" for the booleans
				fmt.Sprintf("-%s: invalid %s %q: %s", tc.flag, tc.kind, tc.text, tc.why)},
			{"env", nil, []string{env + "=" + tc.text}, "",
				fmt.Sprintf("-%s: invalid %s %q (from %s): %s", tc.flag, tc.kind, tc.text, env, tc.why)},
			{"file", nil, nil, key + ": " + tc.text + "\n",
				fmt.Sprintf("c.yaml:1: %s: invalid %s %q: %s", key, tc.kind, tc.text, tc.why)},
		}
		for _, src := range sources {
			t.Run(tc.flag+"="+tc.text+"/"+src.name, func(t *testing.T) {
				args := append(append([]string(nil), src.args...), tc.extra...)
				if src.file != "" {
					t.Chdir(t.TempDir()) // so that the errors name "c.yaml"
					if err := os.WriteFile("c.yaml", []byte(src.file), 0o600); err != nil {
						t.Fatal(err)
					}
					args = append([]string{"-config", "c.yaml"}, args...)
				}
				c, warnings, err := loadConfig(args, src.env)
				if len(warnings) > 0 {
					t.Errorf("warnings %q", warnings)
				}
				if tc.kind != "" {
					if err == nil || err.Error() != src.errText {
						t.Errorf("error %v\nwant %s", err, src.errText)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				o := opts{engineOptions(c, nil), hubOptions(c)}
				if got := tc.get(o); got != tc.want {
					t.Errorf("got %v (%T), want %v (%T)", got, got, tc.want, tc.want)
				}
				// The engine and the hub take what they are given.
				if _, err := engine.New(engine.NopHandler{}, o.e); err != nil {
					t.Errorf("engine.New: %v", err)
				}
			})
		}
	}
}
