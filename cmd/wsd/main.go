// Command wsd is a WebSocket server on gnet event loops. See the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "wsd:", err)
		}
		os.Exit(2)
	}
}

func run(args []string) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	raiseFileLimit(log)

	hubOpts, err := hubOptions(cfg)
	if err != nil {
		return err
	}
	hub := broadcast.New(hubOpts)
	md, err := newMode(cfg, hub)
	if err != nil {
		return err
	}
	opts := engineOptions(cfg, log)
	opts.OnUpgrade, opts.HTTPHandler = md.onUpgrade, md.httpHandler
	e, err := engine.New(md.handler, opts)
	if err != nil {
		return err
	}

	var adminSrv *http.Server
	if cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		adminSrv = &http.Server{
			Handler:           newAdmin(hub, e.Stats, cfg.APIToken, int64(cfg.MaxMessageSize), cfg.Pprof),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() { _ = adminSrv.Serve(ln) }()
		log.Info("admin listening", zap.String("addr", ln.Addr().String()), zap.Bool("token", cfg.APIToken != ""), zap.Bool("pprof", cfg.Pprof))
	}
	log.Info("starting", zap.String("mode", cfg.Mode))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- e.Run() }()
	select {
	case err := <-done:
		return err
	case s := <-sig:
		log.Info("signal received, closing connections", zap.String("signal", s.String()))
	}
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.CloseTimeout+5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		log.Warn("shutdown", zap.Error(err))
	}
	return nil
}

// engineOptions maps the daemon's config onto engine.Options. In the daemon
// a zero duration means "off"; in engine.Options it means "default".
func engineOptions(cfg *config, log *zap.Logger) engine.Options {
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	maxMsg := int64(cfg.MaxMessageSize)
	if maxMsg == 0 {
		maxMsg = -1
	}
	return engine.Options{
		Addrs:            splitList(cfg.Addr),
		EventLoops:       cfg.EventLoops,
		ReusePort:        cfg.ReusePort,
		MaxHeaderBytes:   int(cfg.MaxHeaderBytes),
		MaxMessageSize:   maxMsg,
		HandshakeTimeout: off(cfg.HandshakeTimeout),
		PingInterval:     off(cfg.PingInterval),
		IdleTimeout:      off(cfg.IdleTimeout),
		CloseTimeout:     cfg.CloseTimeout,
		AllowedOrigins:   splitList(cfg.Origins),
		Subprotocols:     splitList(cfg.Subprotocols),
		Logger:           log,
	}
}

// hubOptions maps the slow-consumer flags onto broadcast.Options.
func hubOptions(cfg *config) (broadcast.Options, error) {
	o := broadcast.Options{MaxBuffered: int(cfg.MaxBuffered), CloseCode: codec.StatusCode(cfg.SlowCloseCode)}
	switch cfg.SlowPolicy {
	case "drop":
		o.Policy = broadcast.Drop
	case "close":
		o.Policy = broadcast.Close
	default:
		return o, fmt.Errorf("slow-policy must be drop or close, not %q", cfg.SlowPolicy)
	}
	if !o.CloseCode.ValidOnWire() {
		return o, fmt.Errorf("slow-close-code %d is not a close code a server may send", cfg.SlowCloseCode)
	}
	return o, nil
}
