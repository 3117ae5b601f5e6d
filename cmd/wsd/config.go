package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// config is everything wsd can be told. Each field is a flag; the same name
// with underscores is a key of the YAML config file, and WSD_ plus the name
// in upper case with underscores is an environment variable. Flags win over
// the environment, which wins over the file.
type config struct {
	ConfigFile       string
	Addr             string
	Mode             string
	EventLoops       int
	ReusePort        bool
	MaxMessageSize   byteSize
	MaxHeaderBytes   byteSize
	HandshakeTimeout time.Duration
	PingInterval     time.Duration
	IdleTimeout      time.Duration
	CloseTimeout     time.Duration
	Origins          string
	Subprotocols     string
	SkipSender       bool
	ClientPublish    string
	MaxBuffered      byteSize
	SlowPolicy       string
	SlowCloseCode    int
	AdminAddr        string
	APIToken         string
	Pprof            bool
	LogLevel         string
	LogFormat        string
}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("wsd", flag.ContinueOnError)
	fs.StringVar(&c.ConfigFile, "config", "", "YAML config file (see configs/wsd.yaml)")
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen addresses, comma-separated: host:port, tcp://host:port or unix:///path.sock")
	fs.StringVar(&c.Mode, "mode", "chat", "what to serve: chat (rooms by URL path, demo page at /), push (topics and a publish API) or echo")
	fs.IntVar(&c.EventLoops, "event-loops", 0, "event loops (0: one per CPU)")
	fs.BoolVar(&c.ReusePort, "reuse-port", runtime.GOOS == "linux", "one SO_REUSEPORT listener per event loop: the kernel spreads accepts, no acceptor hands connections over (Linux; note a second wsd on the same port then starts and shares it)")
	c.MaxMessageSize = 16 << 20
	fs.Var(&c.MaxMessageSize, "max-message-size", "largest message accepted, e.g. 16MiB, 65536 (larger: close 1009)")
	c.MaxHeaderBytes = 8 << 10
	fs.Var(&c.MaxHeaderBytes, "max-header-bytes", "largest upgrade request header (larger: HTTP 431)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "time allowed from accept to a complete upgrade request (0: none)")
	fs.DurationVar(&c.PingInterval, "ping-interval", 20*time.Second, "ping a connection silent for this long (0: no pings)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 60*time.Second, "close (1001) a connection silent for this long, pongs included (0: never)")
	fs.DurationVar(&c.CloseTimeout, "close-timeout", 5*time.Second, "wait this long for the peer's close frame after sending ours")
	fs.StringVar(&c.Origins, "origins", "", "allowed Origin values, comma-separated (empty: any)")
	fs.StringVar(&c.Subprotocols, "subprotocols", "", "supported subprotocols, comma-separated, in preference order")
	fs.BoolVar(&c.SkipSender, "skip-sender", false, "chat: do not send a message back to its sender")
	fs.StringVar(&c.ClientPublish, "client-publish", "", `push: topics clients may publish to, comma-separated ("*" all, "news.*" a prefix)`)
	c.MaxBuffered = 1 << 20
	fs.Var(&c.MaxBuffered, "max-buffered", "broadcast: bytes a connection may have waiting to be sent before -slow-policy applies")
	fs.StringVar(&c.SlowPolicy, "slow-policy", "drop", "broadcast: drop (skip frames for a slow connection) or close (close it)")
	fs.IntVar(&c.SlowCloseCode, "slow-close-code", 1008, "broadcast: close code of -slow-policy close (1008 or 1013)")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9090", "admin HTTP listener: publish API, topics, /healthz, /metrics (empty: off)")
	fs.StringVar(&c.APIToken, "api-token", "", "bearer token required on the admin /api/ endpoints (empty: none)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on the admin listener")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "console", "log format: console or json")
	return fs
}

// loadConfig parses args, then fills every flag not given on the command
// line from the environment, else from the config file.
func loadConfig(args []string) (*config, error) {
	c := new(config)
	fs := newFlagSet(c)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if !set["config"] {
		if v, ok := os.LookupEnv("WSD_CONFIG"); ok {
			c.ConfigFile = v
		}
	}
	file := map[string]string{}
	if c.ConfigFile != "" {
		var err error
		if file, err = readConfigFile(c.ConfigFile, fs); err != nil {
			return nil, err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || f.Name == "config" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		src := envName(f.Name)
		if !ok {
			v, ok = file[f.Name]
			src = c.ConfigFile + ": " + strings.ReplaceAll(f.Name, "-", "_")
		}
		if ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %v", src, e)
			}
		}
	})
	return c, err
}

func envName(flagName string) string {
	return "WSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// readConfigFile reads a YAML mapping whose keys are flag names written
// with underscores. Lists become comma-separated values.
func readConfigFile(path string, fs *flag.FlagSet) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	out := make(map[string]string, len(raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		if fs.Lookup(name) == nil || name == "config" {
			return nil, fmt.Errorf("%s: unknown key %q", path, k)
		}
		switch v := raw[k].(type) {
		case nil:
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[name] = strings.Join(parts, ",")
		default:
			out[name] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// byteSize is a flag value in bytes that accepts KiB, MiB and GiB (and
// KB, MB, GB as the same binary units) suffixes.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
