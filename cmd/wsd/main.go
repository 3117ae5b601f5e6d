// Command wsd is a WebSocket server on gnet event loops. See the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// Exit statuses of wsd.
const (
	exitOK      = 0 // also after -h
	exitFailure = 1 // a failure at run time: a port in use, the engine stopped
	exitConfig  = 2 // a configuration error; nothing was started
)

func main() {
	os.Exit(exitStatus(os.Stderr, run(os.Args[1:], os.Environ())))
}

// configError is an error of the configuration, found before anything
// starts.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// startError is a failure of newDaemon to start what the configuration
// asks for (the NATS broker): a failure at run time, not of the
// configuration.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// exitStatus prints err, if any, as "wsd: ..." lines (one for each error
// it joins) and returns the exit status for it.
func exitStatus(w io.Writer, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	status, errs := exitFailure, []error{err}
	var ce *configError
	if errors.As(err, &ce) {
		status = exitConfig
		if j, ok := ce.err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
	}
	for _, e := range errs {
		fmt.Fprintln(w, "wsd:", e)
	}
	return status
}

// run is wsd: it reads and checks the whole configuration and builds
// everything before it starts anything, so that a configuration error is
// reported before any listener opens and before any log line.
func run(args, environ []string) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Stdout)
	}
	cfg, warnings, err := loadConfig(args, environ)
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "wsd: warning:", w)
	}
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout)
		return err
	}
	if err != nil {
		return &configError{err}
	}
	// From here SIGINT and SIGTERM stop wsd: while a cluster node waits for
	// its JetStream quorum (minutes, perhaps) by ending the wait, then by
	// serve's orderly shutdown.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	abort, stop := make(chan struct{}), make(chan os.Signal, 1)
	go func() {
		s := <-sig
		close(abort)
		stop <- s
	}()
	d, err := buildDaemon(cfg, true, abort)
	var se *startError
	switch {
	case errors.Is(err, natsbroker.ErrAborted):
		fmt.Fprintf(os.Stderr, "wsd: stopped by a signal (%v) while its cluster node was starting\n", <-stop)
		return nil
	case errors.As(err, &se):
		return se.err
	case err != nil:
		return &configError{err}
	}
	defer func() { _ = d.log.Sync() }()
	return d.serve(stop)
}

// daemon is wsd built from its configuration, not yet started.
type daemon struct {
	cfg    *config
	log    *zap.Logger
	hub    *broadcast.Hub
	engine *engine.Engine
	admin  *admin     // nil without -admin-addr
	nodes  *cluster   // nil without -nats-url or -nats-listen
	certs  *certStore // nil without -tls-cert
	auth   *authn     // nil without -auth

	// adminLn is the admin listener once open: in a cluster before the
	// broker starts (buildDaemon), alone in serve.
	adminLn *adminListener
}

// newDaemon is buildDaemon without the admin listener, which serve opens.
func newDaemon(cfg *config) (*daemon, error) { return buildDaemon(cfg, false, nil) }

// buildDaemon builds the logger, the hub, the mode's handler, the engine
// and the admin handler. It opens nothing and logs nothing, but in a
// cluster: there, once everything else is checked, it starts the NATS
// broker (which connects, and listens with -nats-listen), and a failure to
// do so is a *startError. The broker may wait minutes for a JetStream
// quorum, so with adminFirst it opens the admin listener just before,
// which answers 503 "starting" until the node serves (adminListener).
// Closing abort ends that wait: the error is then natsbroker.ErrAborted.
func buildDaemon(cfg *config, adminFirst bool, abort <-chan struct{}) (d *daemon, err error) {
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return nil, err
	}
	d = &daemon{cfg: cfg, log: log}
	opts := engineOptions(cfg, log)
	if cfg.tlsOn() {
		d.certs = newCertStore(cfg)
		if err := setTLS(&opts, cfg, d.certs); err != nil {
			return nil, err
		}
	}
	hopts := hubOptions(cfg)
	if cfg.clustered() {
		// engine.New only checks its options: run it once first, so that
		// a mistake there is reported before the broker opens anything.
		if _, err := engine.New(echoHandler{}, opts); err != nil {
			return nil, err
		}
		if adminFirst && cfg.AdminAddr != "" {
			if d.adminLn, err = listenAdmin(cfg, d.certs, log, startingFor(cfg)); err != nil {
				return nil, &startError{err}
			}
			ln := d.adminLn // d is nil once an error is returned
			defer func() {
				if err != nil { // buildDaemon's error
					ln.close()
				}
			}()
		}
		cl, cerr := startCluster(cfg, log, abort)
		if cerr != nil {
			return nil, &startError{cerr}
		}
		defer func() {
			if err != nil { // newDaemon's error
				cl.close()
			}
		}()
		d.nodes, hopts.Broker = cl, cl.b
	}
	d.hub = broadcast.New(hopts)
	md, err := newModeIn(cfg, d.hub, d.nodes)
	if err != nil {
		return nil, err
	}
	opts.OnUpgrade, opts.HTTPHandler = md.onUpgrade, md.httpHandler
	if d.auth = md.auth; d.auth != nil {
		d.auth.log = log
		a := d.auth // d is nil once an error is returned
		defer func() {
			if err != nil { // newDaemon's error: nothing will shut it down
				a.close()
			}
		}()
	}
	if cfg.TLSClientCA != "" && log.Core().Enabled(zap.DebugLevel) {
		opts.OnUpgrade = logClientCert(md.onUpgrade, log)
	}
	if d.engine, err = engine.New(md.handler, opts); err != nil {
		return nil, err
	}
	if d.nodes != nil {
		d.nodes.attach(d.hub, md)
	}
	if cfg.AdminAddr != "" {
		d.admin = newAdmin(d.hub, d.engine.Stats, cfg.APIToken, cfg.MaxMessageSize, cfg.Pprof)
		if d.nodes != nil {
			d.admin.join(d.nodes)
		}
		d.admin.addAuthRoutes(d.auth)
		d.admin.addHistoryRoutes()
	}
	return d, nil
}

// serve opens the listeners and serves until a signal comes on stop
// (SIGINT or SIGTERM: then it closes the connections and returns nil) or
// until the engine fails.
func (d *daemon) serve(stop <-chan os.Signal) error {
	defer d.nodes.close() // the engine first (below), then the broker
	raiseFileLimit(d.log)
	if d.admin != nil && d.adminLn == nil { // alone: it serves at once
		srv, err := listenAdmin(d.cfg, d.certs, d.log, startingReply{})
		if err != nil {
			return err
		}
		d.adminLn = srv
		srv.serve(d.admin)
	}
	defer d.adminLn.close()
	d.log.Info("starting", zap.String("mode", d.cfg.Mode))
	if d.certs != nil {
		d.log.Info("serving wss", append(certFields(d.certs.cert.Load()), zap.Strings("on", d.engineTLSAddrs()), zap.String("min_version", d.cfg.TLSMinVersion), zap.Bool("client_certs", d.cfg.TLSClientCA != ""), zap.String("curves", curvesLogged(d.cfg.TLSCurves)))...)
	}
	if cl := d.nodes; cl != nil {
		d.log.Info("cluster node", zap.String("node", cl.b.Node()), zap.String("nats", cl.where), zap.String("prefix", d.cfg.NATSPrefix))
	}

	var hup chan os.Signal // SIGHUP reloads the certificate
	if d.certs != nil {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	done := make(chan error, 1)
	go func() { done <- d.engine.Run() }()
	ready := d.engine.Ready()
wait:
	for {
		select {
		case <-ready:
			// The WebSocket listener is open: an admin listener that
			// answered "starting" serves the admin API now.
			d.adminLn.serve(d.admin)
			ready = nil
		case err := <-done:
			return fmt.Errorf("engine on %s: %w", d.cfg.Addr, err)
		case <-hup:
			d.certs.reload(d.log)
		case s := <-stop:
			d.log.Info("signal received, closing connections", zap.String("signal", s.String()))
			break wait
		}
	}
	d.adminLn.close()
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CloseTimeout+5*time.Second)
	defer cancel()
	if err := d.shutdown(ctx); err != nil {
		d.log.Warn("shutdown", zap.Error(err))
	}
	return nil
}

// shutdown closes the connections and stops the engine, then what served
// them: the authentication's check workers.
func (d *daemon) shutdown(ctx context.Context) error {
	err := d.engine.Shutdown(ctx)
	d.auth.close()
	return err
}

// engineOptions maps the daemon's config onto engine.Options. In the
// daemon 0 turns a limit or a timeout off; in engine.Options 0 means the
// default and a negative value turns it off. The rate limits and the
// connection caps pass through as they are: their 0 is "no limit" there
// too, and a zero burst twice the rate in both.
func engineOptions(cfg *config, log *zap.Logger) engine.Options {
	return engine.Options{
		Addrs:               splitList(cfg.Addr),
		EventLoops:          cfg.EventLoops,
		ReusePort:           cfg.ReusePort,
		MaxHeaderBytes:      int(cfg.MaxHeaderBytes),
		MaxMessageSize:      offIfZero(cfg.MaxMessageSize),
		HandshakeTimeout:    offIfZero(cfg.HandshakeTimeout),
		PingInterval:        offIfZero(cfg.PingInterval),
		IdleTimeout:         offIfZero(cfg.IdleTimeout),
		CloseTimeout:        offIfZero(cfg.CloseTimeout),
		MaxBuffered:         offIfZero(int(cfg.MaxBuffered)),
		BackpressureCode:    codec.StatusCode(cfg.BackpressureCode),
		WriteTimeout:        offIfZero(cfg.WriteTimeout),
		MaxBufferedTotal:    offIfZero(cfg.MaxBufferedTotal),
		MessageTimeout:      offIfZero(cfg.MessageTimeout),
		MaxMessageRate:      cfg.MaxMsgRate,
		MaxMessageBurst:     cfg.MaxMsgBurst,
		MaxByteRate:         cfg.MaxByteRate,
		RateLimitDrop:       cfg.RateLimitAction == "drop",
		MaxConns:            cfg.MaxConns,
		MaxConnsPerIP:       cfg.MaxConnsPerIP,
		HandshakeRatePerIP:  cfg.HandshakeRatePerIP,
		HandshakeBurstPerIP: cfg.HandshakeBurstPerIP,
		AllowedOrigins:      splitList(cfg.Origins),
		Subprotocols:        splitList(cfg.Subprotocols),
		Compression: engine.Compression{
			Off:                   !cfg.Compression,
			Level:                 cfg.CompressionLevel,
			Threshold:             compressionThreshold(cfg),
			ClientContextTakeover: cfg.CompressionClientContextTakeover,
		},
		Logger: log,
	}
}

// compressionThreshold maps -compression-threshold onto
// engine.Compression.Threshold: the daemon's 0 tries every message, which
// engine.Compression spells -1 (its 0 is the default, 256).
func compressionThreshold(cfg *config) int {
	if cfg.CompressionThreshold == 0 {
		return -1
	}
	return int(cfg.CompressionThreshold)
}

// offIfZero maps the daemon's 0 ("off") to the -1 that means off in
// engine.Options and broadcast.Options.
func offIfZero[T int | int64 | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// hubOptions maps the broadcast flags onto broadcast.Options, where 0
// means the default and a negative value no cap. The hub has no cap of its
// own on unsent bytes: -max-buffered is the engine's, which the hub's
// policy applies to before the engine would close the connection.
func hubOptions(cfg *config) broadcast.Options {
	o := broadcast.Options{
		Policy:           broadcast.Drop,
		CloseCode:        codec.StatusCode(cfg.SlowCloseCode),
		MaxSubscriptions: offIfZero(cfg.MaxSubscriptions),
		MaxQueued:        offIfZero(cfg.MaxQueued),
		// A publish is compressed once, with the settings of the engine's
		// writes, for the subscribers that negotiated permessage-deflate
		// (with -compression=false none does, and the hub compresses nothing).
		CompressThreshold: compressionThreshold(cfg),
		CompressLevel:     cfg.CompressionLevel,
	}
	if cfg.SlowPolicy == "close" {
		o.Policy = broadcast.Close
	}
	historyOptions(cfg, &o)
	return o
}
