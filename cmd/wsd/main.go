// Command wsd is a WebSocket server on gnet event loops. See the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

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

	h, err := newHandler(cfg.Mode)
	if err != nil {
		return err
	}
	e, err := engine.New(h, engineOptions(cfg, log))
	if err != nil {
		return err
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
