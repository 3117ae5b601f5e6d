package natsbroker

import (
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// startServer runs the embedded NATS server of Options (URLs empty): a
// route port if Listen, with routes to Routes, and a client port only if
// ClientListen or Listen is set. It returns once the server accepts
// connections.
func startServer(o *Options, node string, log *zap.Logger) (*server.Server, error) {
	so := &server.Options{
		ServerName: node,
		NoSigs:     true,
		MaxPayload: int32(o.MaxPayload),
		// The node's own connection is one of the server's clients: see
		// Options.MaxPending and slow.go.
		MaxPending:    o.MaxPending,
		WriteDeadline: o.WriteDeadline,
		JetStream:     o.History != nil,  // history.go
		StoreDir:      storeDir(o, node), // embedded_js_cluster.go
	}
	switch {
	case o.ClientListen != "":
		so.Host, so.Port, _ = splitListen(o.ClientListen) // checked by validate
	case o.Listen != "":
		// nats-server starts routing only once its client port listens
		// (with DontListen, never): a free loopback port, which this node
		// does not use, as it connects in-process.
		so.Host, so.Port = "127.0.0.1", server.RANDOM_PORT
	default:
		so.DontListen = true
	}
	if o.Listen != "" {
		host, port, _ := splitListen(o.Listen)
		so.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: host, Port: port}
		for _, r := range o.Routes {
			u, _ := parseRoute(r)
			so.Routes = append(so.Routes, &url.URL{Scheme: "nats", Host: u.Host, User: u.User})
		}
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: embedded NATS server: %w", err)
	}
	s.SetLoggerV2(serverLogger{log.Sugar().Named("nats-server")}, false, false, false)
	go s.Start()
	if ready, err := waitReady(s, o.Abort); !ready {
		s.Shutdown()
		s.WaitForShutdown()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("natsbroker: embedded NATS server did not start (Listen %q, ClientListen %q)", o.Listen, o.ClientListen)
	}
	if err := waitMetaLeader(s, o, log); err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, err
	}
	return s, nil
}

// serverLogger passes the embedded server's log to zap. Its notices are
// lifecycle events (listening, routes coming and going): Info.
type serverLogger struct{ s *zap.SugaredLogger }

func (l serverLogger) Noticef(format string, v ...any) { l.s.Infof(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.s.Warnf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.s.Errorf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.s.Errorf(format, v...) } // never exit the process
func (l serverLogger) Debugf(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  {}

// waitReady waits up to 10 s for s to take connections, or until abort
// is closed (ErrAborted): a route port already taken keeps it from ever
// being ready.
func waitReady(s *server.Server, abort <-chan struct{}) (bool, error) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if s.ReadyForConnections(100 * time.Millisecond) {
			return true, nil
		}
		select {
		case <-abort:
			return false, ErrAborted
		default:
		}
	}
	return false, nil
}
