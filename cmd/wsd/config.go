package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// config is everything wsd can be told. Each field is a flag; the same name
// with underscores is a key of the YAML config file, and WSD_ plus the name
// in upper case with underscores is an environment variable. Flags win over
// the environment, which wins over the file.
//
// In the daemon 0 turns a limit or a timeout off (engineOptions and
// hubOptions turn that into the negative values of engine.Options and
// broadcast.Options); -event-loops 0 is one loop per CPU, a burst of 0 is
// twice its rate, and -max-header-bytes cannot be off.
type config struct {
	ConfigFile          string
	Addr                string
	Mode                string
	EventLoops          int
	ReusePort           bool
	MaxMessageSize      int64
	MaxHeaderBytes      int64 // fits an int
	HandshakeTimeout    time.Duration
	PingInterval        time.Duration
	IdleTimeout         time.Duration
	CloseTimeout        time.Duration
	Origins             string
	Subprotocols        string
	SkipSender          bool
	ClientPublish       string
	MaxBuffered         int64 // fits an int
	BackpressureCode    int
	WriteTimeout        time.Duration
	MaxBufferedTotal    int64
	MessageTimeout      time.Duration
	MaxMsgRate          float64
	MaxMsgBurst         int
	MaxByteRate         int64
	RateLimitAction     string
	MaxConns            int
	MaxConnsPerIP       int
	HandshakeRatePerIP  float64
	HandshakeBurstPerIP int
	SlowPolicy          string
	SlowCloseCode       int
	MaxSubscriptions    int
	MaxQueued           int64
	AdminAddr           string
	APIToken            string
	Pprof               bool
	LogLevel            string
	LogFormat           string

	// permessage-deflate. Unlike a limit, -compression-threshold 0 is not
	// off: it compresses every message (-compression false is off).
	Compression                      bool
	CompressionLevel                 int
	CompressionThreshold             int64 // fits an int
	CompressionClientContextTakeover bool

	// Sharing topics with other wsd nodes over NATS (cluster_config.go):
	// either joining a NATS deployment (NATSURL) or running an embedded
	// NATS node joined to the others by routes (NATSListen, NATSRoutes).
	// Neither: the in-process hub, alone.
	NATSURL         string
	NATSCreds       string
	NATSTLSCA       string
	NATSListen      string
	NATSRoutes      string
	NATSPrefix      string
	NATSNode        string
	NATSClusterName string
	NATSStoreDir    string

	// wss (tls.go): with TLSCert and TLSKey, every Addr serves wss, or
	// TLSAddr does next to the plain Addr. cert is the pair, loaded when
	// the configuration is checked.
	TLSCert          string
	TLSKey           string
	TLSAddr          string
	TLSMinVersion    string
	TLSCurves        string
	TLSClientCA      string
	MaxTLSHandshakes int
	AdminTLS         bool
	cert             *tls.Certificate

	// Client authentication (auth_config.go).
	Auth authConfig

	// Topics that keep history (history.go): PATTERN=SIZE[/TTL] entries.
	History string

	// from records where each setting that was given came from, by flag
	// name, for the errors about relations between settings.
	from map[string]source
}

// newFlagSet sets c to the defaults and returns the flags bound to its
// fields. Each flag value checks what it is set to (see values.go).
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("wsd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	text := func(p *string, name, def string, check func(string) *valueError, usage string) {
		*p = def
		fs.Var(&textValue{p: p, check: check}, name, usage)
	}
	list := func(p *string, name, def string, check func(string) *valueError, usage string) {
		*p = def
		fs.Var(&textValue{p: p, list: true, check: check}, name, usage)
	}
	integer := func(v *intValue, name string, def int, usage string) {
		*v.p = def
		fs.Var(v, name, usage)
	}
	boolean := func(p *bool, name string, def bool, usage string) {
		*p = def
		fs.Var(&boolValue{p}, name, usage)
	}
	duration := func(p *time.Duration, name string, def time.Duration, usage string) {
		*p = def
		fs.Var(&durationValue{p}, name, usage)
	}
	size := func(p *int64, name string, def, min, max int64, usage string) {
		*p = def
		fs.Var(&sizeValue{p: p, min: min, max: max}, name, usage)
	}
	rate := func(p *float64, name string, usage string) {
		*p = 0
		fs.Var(&rateValue{p}, name, usage)
	}
	count := func(p *int, name string, def int, want, usage string) {
		integer(&intValue{p: p, kind: "count", want: want, ok: func(n int) bool { return n >= 0 }}, name, def, usage)
	}

	text(&c.ConfigFile, "config", "", nil, "YAML config file (see configs/wsd.yaml)")
	list(&c.Addr, "addr", "127.0.0.1:8080", checkListenAddrs, "listen addresses, comma-separated: host:port, tcp://host:port, tcp4://, tcp6:// or unix:///path.sock")
	text(&c.Mode, "mode", "chat", oneOf("mode", "chat", "push", "echo"), "what to serve: chat (rooms by URL path, demo page at /), push (topics and a publish API) or echo")
	integer(&intValue{p: &c.EventLoops, kind: "event loop count", want: "want 0 (one per CPU) or more", ok: func(n int) bool { return n >= 0 }}, "event-loops", 0, "event loops (0: one per CPU)")
	boolean(&c.ReusePort, "reuse-port", runtime.GOOS == "linux", "one SO_REUSEPORT listener per event loop: the kernel spreads accepts, no acceptor hands connections over (Linux; note a second wsd on the same port then starts and shares it)")
	size(&c.MaxMessageSize, "max-message-size", 16<<20, 0, math.MaxInt64, "largest message accepted, e.g. 16MiB, 65536 (larger: close 1009); also the largest payload of POST /api/publish (larger: 413)")
	size(&c.MaxHeaderBytes, "max-header-bytes", 8<<10, 256, math.MaxInt, "largest upgrade request header (larger: HTTP 431); at least 256, cannot be off")
	duration(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "time allowed from accept to a complete upgrade request")
	duration(&c.PingInterval, "ping-interval", 20*time.Second, "ping a connection silent for this long")
	duration(&c.IdleTimeout, "idle-timeout", 60*time.Second, "close (1001) a connection silent for this long, pongs included; must exceed -ping-interval")
	duration(&c.CloseTimeout, "close-timeout", 5*time.Second, "wait this long for the peer's close frame after sending ours (0: close TCP at once)")
	list(&c.Origins, "origins", "", nil, "allowed Origin values, comma-separated (empty: any)")
	list(&c.Subprotocols, "subprotocols", "", eachItem(checkToken), "supported subprotocols, comma-separated, in preference order")
	boolean(&c.Compression, "compression", true, "permessage-deflate (RFC 7692) for clients that offer it, as browsers do; false declines every offer")
	integer(&intValue{p: &c.CompressionLevel, kind: "compression level", want: "want 1 (fastest) to 9 (smallest)", ok: func(n int) bool { return n >= 1 && n <= 9 }},
		"compression-level", codec.DefaultCompressionLevel, "deflate level, 1 (fastest) to 9 (smallest output, most CPU)")
	size(&c.CompressionThreshold, "compression-threshold", engine.DefaultCompressionThreshold, 0, math.MaxInt,
		"messages (and publishes) shorter than this are sent uncompressed, and a compressed one only when smaller; 0 tries every message (it is not off: that is -compression=false)")
	boolean(&c.CompressionClientContextTakeover, "compression-client-context-takeover", false, "let clients compress each message with the ones before it: a window of up to 32KiB per such connection, kept for its life")
	boolean(&c.SkipSender, "skip-sender", false, "chat: do not send a message back to its sender")
	list(&c.ClientPublish, "client-publish", "", nil, `push: topics clients may publish to, comma-separated ("*" all, "news.*" a prefix)`)
	size(&c.MaxBuffered, "max-buffered", 1<<20, 0, math.MaxInt, "bytes waiting to be sent to one connection: a write that finds this many unsent closes it with -backpressure-code, a broadcast follows -slow-policy; input is not read on while over half of it")
	integer(&intValue{p: &c.BackpressureCode, kind: "close code", want: closeCodeWant, ok: closeCodeOK}, "backpressure-code", 1008, "close code of a connection closed by -max-buffered: 1008, 1013 or 3000-4999")
	duration(&c.WriteTimeout, "write-timeout", 30*time.Second, "close (1008) a connection whose unsent bytes have not shrunk for this long")
	size(&c.MaxBufferedTotal, "max-buffered-total", engine.DefaultMaxBufferedTotal(), 0, math.MaxInt64, "unsent bytes of all connections together; over it the largest backlogs are closed first (1013); by default a quarter of physical memory, at most 1GiB")
	duration(&c.MessageTimeout, "message-timeout", 60*time.Second, "close (1008) a connection whose message takes longer than this to arrive, first byte to last")
	rate(&c.MaxMsgRate, "max-msg-rate", "messages one connection may send per second, e.g. 100 or 0.5; over it -rate-limit-action applies")
	count(&c.MaxMsgBurst, "max-msg-burst", 0, "want 0 (twice -max-msg-rate) or more", "messages one connection may send at once under -max-msg-rate (0: twice the rate)")
	size(&c.MaxByteRate, "max-byte-rate", 0, 0, math.MaxInt64, "message payload bytes one connection may send per second, e.g. 1MiB; over it -rate-limit-action applies")
	text(&c.RateLimitAction, "rate-limit-action", "close", oneOf("rate limit action", "close", "drop"), "over -max-msg-rate or -max-byte-rate: close (1008) or drop (skip the message, count it, keep the connection)")
	count(&c.MaxConns, "max-conns", 0, "want 0 (no limit) or more", "connections served at once; more are answered 503 and closed (keep it under the open-file limit)")
	count(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "want 0 (no limit) or more", "connections served at once from one IPv4 address or IPv6 /64; more are answered 429 and closed")
	rate(&c.HandshakeRatePerIP, "handshake-rate-per-ip", "new connections one IPv4 address or IPv6 /64 may open per second, e.g. 10 or 0.2; more are answered 429 and closed")
	count(&c.HandshakeBurstPerIP, "handshake-burst-per-ip", 0, "want 0 (twice -handshake-rate-per-ip, at least 1) or more", "new connections one address may open at once under -handshake-rate-per-ip (0: twice the rate, at least 1)")
	text(&c.SlowPolicy, "slow-policy", "drop", oneOf("slow policy", "drop", "close"), "broadcast to a connection at -max-buffered: drop (skip the frame, count it, keep the connection) or close (with -slow-close-code)")
	integer(&intValue{p: &c.SlowCloseCode, kind: "close code", want: closeCodeWant, ok: closeCodeOK}, "slow-close-code", 1008, "broadcast: close code of -slow-policy close: 1008, 1013 or 3000-4999")
	count(&c.MaxSubscriptions, "max-subscriptions", 256, "want 0 (no limit) or more", "push: topics one connection may be subscribed to")
	size(&c.MaxQueued, "max-queued", 64<<20, 0, math.MaxInt64, "broadcast: published bytes waiting for one event loop; past it that loop skips publishes until it catches up")
	text(&c.AdminAddr, "admin-addr", "127.0.0.1:9090", checkAdminAddr, "admin HTTP listener: publish API, topics, /healthz, /metrics (empty: off)")
	text(&c.APIToken, "api-token", "", nil, "bearer token required on the admin /api/ endpoints (empty: none)")
	boolean(&c.Pprof, "pprof", false, "serve /debug/pprof on the admin listener")
	text(&c.LogLevel, "log-level", "info", oneOf("log level", "debug", "info", "warn", "error"), "log level: debug, info, warn or error")
	text(&c.LogFormat, "log-format", "console", oneOf("log format", "console", "json"), "log format: console or json")
	addTLSFlags(fs, c)
	addClusterFlags(fs, c)
	addAuthFlags(fs, c)
	addHistoryFlags(fs, c)
	return fs
}

// printUsage writes what wsd -h shows: every flag with its default.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: wsd [flags]
       wsd token -key FILE -sub USER [flags]   (a connection token for -auth; wsd token -h)

Every flag is also an environment variable (-ping-interval: WSD_PING_INTERVAL)
and a key of the -config YAML file (ping_interval). Flags win over the
environment, which wins over the file. For a limit or a timeout, 0 means off.

`)
	newFlagSet(new(config)).VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  -%s%s", f.Name, valueKind(f.Value))
		if f.DefValue != "" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "\n    \t%s\n", f.Usage)
	})
}

// valueKind is what the usage shows after a flag's name: " list",
// " duration", ...; nothing for a boolean.
func valueKind(v flag.Value) string {
	switch v := v.(type) {
	case *textValue:
		if v.list {
			return " list"
		}
		return " string"
	case *intValue:
		return " int"
	case *durationValue:
		return " duration"
	case *sizeValue:
		return " size"
	case *rateValue:
		return " rate"
	}
	return ""
}

// loadConfig reads the command line args, then fills every flag not given
// there from environ (KEY=value entries, as from os.Environ), else from the
// config file, and checks the result. Its error joins every problem found,
// each naming the flag, variable or key and the value; the warnings are
// about WSD_ variables that name no flag. Nothing is printed.
func loadConfig(args, environ []string) (*config, []string, error) {
	c := &config{from: map[string]source{}}
	fs := newFlagSet(c)
	given, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	env, warnings := fromEnvironment(fs, environ)
	var errs []error
	set := func(name, text string, from source) {
		if err := fs.Set(name, text); err != nil {
			errs = append(errs, &settingError{flag: name, from: from, err: err})
			return
		}
		c.from[name] = from
	}

	if v, ok := given["config"]; ok {
		set("config", v, source{origin: fromFlag})
	} else if v, ok := env["config"]; ok {
		set("config", v, source{origin: fromEnv, env: envName("config")})
	}
	var file map[string]fileValue
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			errs = append(errs, &settingError{flag: "config", from: c.from["config"], err: err})
		} else {
			var ferrs []error
			file, ferrs = parseConfigFile(c.ConfigFile, data, fs)
			errs = append(errs, ferrs...)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return // done above
		}
		if v, ok := given[f.Name]; ok {
			set(f.Name, v, source{origin: fromFlag})
		} else if v, ok := env[f.Name]; ok {
			set(f.Name, v, source{origin: fromEnv, env: envName(f.Name)})
		} else if fv, ok := file[f.Name]; ok {
			set(f.Name, fv.text, fv.from)
		}
	})
	if len(errs) == 0 {
		errs = c.checkRelations()
	}
	return c, warnings, errors.Join(errs...)
}

// parseArgs reads the command line into the text of each flag given, so
// that it is checked by the same code, with the same messages, as values
// from the environment and the file. It returns flag.ErrHelp for -h.
func parseArgs(fs *flag.FlagSet, args []string) (map[string]string, error) {
	given := map[string]string{}
	cli := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	cli.SetOutput(io.Discard)
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		_, isBool := f.Value.(*boolValue)
		cli.Var(&argValue{name: f.Name, given: given, isBool: isBool}, f.Name, f.Usage)
		names = append(names, "-"+f.Name)
	})
	if err := cli.Parse(args); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
			return nil, fmt.Errorf("unknown flag %s%s; see wsd -h", name, didYouMean(name, names))
		}
		return nil, err
	}
	if cli.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: wsd takes only flags (a boolean flag takes its value with =, like -pprof=false)", cli.Arg(0))
	}
	return given, nil
}

// argValue keeps the text given to a flag on the command line.
type argValue struct {
	name   string
	given  map[string]string
	isBool bool
}

func (a *argValue) String() string     { return "" }
func (a *argValue) IsBoolFlag() bool   { return a.isBool }
func (a *argValue) Set(s string) error { a.given[a.name] = s; return nil }

// checkRelations checks the rules that tie settings together; each rule
// on a single setting is checked by its flag value.
func (c *config) checkRelations() []error {
	var errs []error
	if c.PingInterval > 0 && c.IdleTimeout > 0 && c.IdleTimeout <= c.PingInterval {
		errs = append(errs, fmt.Errorf("%s must exceed %s, or a silent peer is closed before it is pinged (0 turns either off)",
			c.describe("idle-timeout", c.IdleTimeout), c.describe("ping-interval", c.PingInterval)))
	}
	for _, b := range []struct {
		burst, rate string
		n           int
		r           float64
	}{{"max-msg-burst", "max-msg-rate", c.MaxMsgBurst, c.MaxMsgRate}, {"handshake-burst-per-ip", "handshake-rate-per-ip", c.HandshakeBurstPerIP, c.HandshakeRatePerIP}} {
		if b.n > 0 && b.r == 0 {
			errs = append(errs, fmt.Errorf("%s needs -%s: a burst is of a rate, and -%s is 0 (off)", c.describe(b.burst, b.n), b.rate, b.rate))
		}
	}
	errs = append(errs, c.checkTLS()...)
	errs = append(errs, c.checkAuth()...)
	return append(errs, c.checkCluster()...)
}

// describe names a setting with its value and where the value came from,
// e.g. `-idle-timeout 10s (from WSD_IDLE_TIMEOUT)`.
func (c *config) describe(name string, v any) string {
	s := fmt.Sprintf("-%s %v", name, v)
	from, ok := c.from[name]
	switch {
	case !ok:
		return s + " (the default)"
	case from.origin == fromFlag:
		return s
	}
	return s + " (from " + from.String() + ")"
}

// listenAddrWant describes the -addr entries wsd takes.
const listenAddrWant = "want host:port (port 1-65535), tcp://host:port, tcp4://host:port, tcp6://host:port or unix:///path/to.sock"

// checkListenAddrs vets -addr: one or more comma-separated entries, each
// host:port, a tcp, tcp4 or tcp6 URL with host:port, or a unix socket URL
// with a path.
func checkListenAddrs(s string) *valueError {
	if len(splitList(s)) == 0 {
		return &valueError{"address list", s, listenAddrWant}
	}
	return eachItem(checkListenAddr)(s)
}

// checkListenAddr vets one -addr entry.
func checkListenAddr(a string) *valueError {
	scheme, rest, ok := strings.Cut(a, "://")
	if !ok {
		scheme, rest = "tcp", a
	}
	switch {
	case scheme == "unix" && rest != "":
		return nil
	case (scheme == "tcp" || scheme == "tcp4" || scheme == "tcp6") && hostPortOK(rest, 1):
		return nil
	}
	return &valueError{"address", a, listenAddrWant}
}

// checkAdminAddr vets -admin-addr: empty (off) or host:port.
func checkAdminAddr(a string) *valueError {
	if a == "" || hostPortOK(a, 0) {
		return nil
	}
	return &valueError{"address", a, "want host:port (port 0-65535, 0 for any free port), or nothing to turn the admin listener off"}
}

// hostPortOK reports whether s is host:port with a port number from
// minPort to 65535. The host may be empty (all interfaces).
func hostPortOK(s string, minPort int) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= minPort && n <= 65535
}

// checkToken vets a subprotocol name: an HTTP token (RFC 9110 §5.6.2).
func checkToken(s string) *valueError {
	ok := s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r > '~' || !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
	})
	if ok {
		return nil
	}
	return &valueError{"subprotocol", s, "want a token: letters, digits and !#$%&'*+-.^_`|~"}
}

// closeCodeWant describes the close codes closeCodeOK accepts.
const closeCodeWant = "want 1008 (policy violation), 1013 (try again later) or an application code 3000-4999"

// closeCodeOK reports whether wsd may close a connection that hit a limit
// with code: 1008 (policy violation), 1013 (try again later) or a code of
// the 3000-4999 ranges left to libraries and applications (RFC 6455
// §7.4.2).
func closeCodeOK(code int) bool {
	return code == 1008 || code == 1013 || code >= 3000 && code <= 4999
}
