// Package peer is the command-line contract shared by the benchmark's peer
// servers (bench/servers/*): flags, the file limit, the debug listener, the
// readiness line and the signals that stop a server.
//
// Nothing here is on a message path: each server's own package holds all of
// its WebSocket code, written the way its library recommends.
package peer

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// The two modes every peer server implements.
const (
	// ModeEcho sends every text or binary message back to its sender with
	// the same opcode.
	ModeEcho = "echo"
	// ModeBroadcast sends every message a client sends to every connected
	// client, the sender included (one room), like `wsd -mode chat` on /ws.
	ModeBroadcast = "broadcast"
)

// Path is the only path a peer server upgrades; any other answers 404.
const Path = "/ws"

// MaxMessageSize is the largest message every peer server accepts (16 MiB).
const MaxMessageSize = 16 << 20

// Config is what the command line asked for.
type Config struct {
	Addr      string // -addr: where the WebSocket server listens
	Mode      string // -mode: ModeEcho or ModeBroadcast
	DebugAddr string // -debug-addr: the /debug/vars listener, "" for none
	// Compress (-compress) accepts permessage-deflate (RFC 7692) without
	// context takeover, for the servers whose library compresses (gorilla,
	// gws); the others refuse the flag.
	Compress bool
	TLS      TLSFiles // -tls-cert, -tls-key: serve wss
}

// Setup parses the command line into a Config (exiting with status 2 on a bad
// one) and raises the soft RLIMIT_NOFILE to the hard limit.
func Setup(name string) Config {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var c Config
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.Mode, "mode", ModeEcho, "echo or broadcast")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "address of the GET /debug/vars listener (empty: none)")
	fs.BoolVar(&c.Compress, "compress", false, "accept permessage-deflate, without context takeover (gorilla and gws only)")
	addTLSFlags(fs, &c.TLS)
	_ = fs.Parse(os.Args[1:]) // ExitOnError: never returns an error
	signal.Notify(stopSignals, os.Interrupt, syscall.SIGTERM)
	if c.Mode != ModeEcho && c.Mode != ModeBroadcast {
		fmt.Fprintf(os.Stderr, "%s: -mode must be %q or %q, not %q\n", name, ModeEcho, ModeBroadcast, c.Mode)
		os.Exit(2)
	}
	if c.Compress && name != "gorilla" && name != "gws" {
		fmt.Fprintf(os.Stderr, "%s: -compress: this server does not compress\n", name)
		os.Exit(2)
	}
	checkTLS(name, c.TLS)
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q\n", name, fs.Args())
		os.Exit(2)
	}
	if err := RaiseFileLimit(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: raising RLIMIT_NOFILE: %v\n", name, err)
	}
	return c
}

// RaiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every
// connection is a descriptor.
func RaiseFileLimit() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= rl.Max {
		return nil
	}
	rl.Cur = rl.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

// Vars is the JSON that GET /debug/vars answers. StackInuse is there because
// goroutine stacks, the main cost of a goroutine per connection, are not in
// the heap figures.
type Vars struct {
	HeapAlloc  uint64 `json:"heap_alloc"`  // bytes of allocated heap objects, garbage not yet collected included
	HeapInuse  uint64 `json:"heap_inuse"`  // bytes in in-use heap spans
	StackInuse uint64 `json:"stack_inuse"` // bytes in goroutine stack spans
	Goroutines int    `json:"goroutines"`
	NumGC      uint32 `json:"num_gc"` // completed GC cycles
}

// ReadVars reads the Go memory figures now (runtime.ReadMemStats stops the
// world briefly, so it runs only when asked); with gc it first runs a
// garbage collection, so that heap_alloc is the live heap.
func ReadVars(gc bool) Vars {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Vars{
		HeapAlloc:  ms.HeapAlloc,
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Goroutines: runtime.NumGoroutine(),
		NumGC:      ms.NumGC,
	}
}

// startDebug starts the GET /debug/vars listener on addr; with addr "" it
// starts nothing and returns nil.
func startDebug(addr string) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	// GET /debug/vars; GET /debug/vars?gc=1 collects garbage first.
	mux.HandleFunc("GET /debug/vars", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ReadVars(r.URL.Query().Get("gc") == "1"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "debug listener: %v\n", err)
		}
	}()
	return srv, nil
}

// Serve runs a started server until SIGINT or SIGTERM: it starts the debug
// listener (cfg.DebugAddr), prints the readiness line, waits for the
// signal, then calls stop and closes the debug listener. An error is fatal.
func Serve(name string, cfg Config, ln net.Listener, stop func()) {
	debug, err := startDebug(cfg.DebugAddr)
	if err != nil {
		Fatal(name, err)
	}
	ready(ln.Addr())
	waitForSignal()
	stop()
	if debug != nil {
		_ = debug.Close()
	}
}

// ServeHTTP listens on cfg.Addr (with TLS if cfg.TLS is on: see Listen),
// serves h with net/http, and runs it with Serve.
func ServeHTTP(name string, cfg Config, h http.Handler) {
	ln := Listen(name, cfg)
	srv := &http.Server{Handler: h, ErrorLog: errorLog(cfg)}
	go func() { _ = srv.Serve(ln) }()
	Serve(name, cfg, ln, func() { _ = srv.Close() })
}

// ready prints the one line that tells the benchmark the server accepts
// connections: "listening on ADDR", ADDR being the bound address (so that
// -addr 127.0.0.1:0 reports the port it got).
func ready(addr net.Addr) {
	fmt.Fprintf(os.Stderr, "listening on %s\n", addr)
}

// stopSignals receives SIGINT and SIGTERM from Setup on, so that a signal sent
// right after the readiness line is never lost to the default action.
var stopSignals = make(chan os.Signal, 1)

// waitForSignal blocks until SIGINT or SIGTERM (caught from Setup on).
func waitForSignal() {
	<-stopSignals
	signal.Stop(stopSignals)
}

// Fatal prints err and exits with status 1.
func Fatal(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}

// IsPath reports whether the request target uri (path and optional query) is
// Path.
func IsPath(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if uri[i] == '?' {
			uri = uri[:i]
			break
		}
	}
	return uri == Path
}
