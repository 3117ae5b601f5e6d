package main

import (
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console", "":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
	default:
		return nil, &formatError{format}
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.DisableCaller = true
	cfg.Sampling = nil
	return cfg.Build()
}

type formatError struct{ f string }

func (e *formatError) Error() string { return "log format must be console or json, not " + e.f }

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit: every
// connection is a file descriptor.
func raiseFileLimit(log *zap.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("reading RLIMIT_NOFILE", zap.Error(err))
		return
	}
	soft := rl.Cur
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("raising RLIMIT_NOFILE", zap.Error(err))
			rl.Cur = soft
		}
	}
	log.Info("file limit", zap.Uint64("soft_before", soft), zap.Uint64("soft", rl.Cur), zap.Uint64("hard", rl.Max))
}
