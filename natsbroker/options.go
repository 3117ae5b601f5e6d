package natsbroker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// Options configures a Broker. The zero value is valid: a node with a
// random id running a standalone embedded NATS server that no other node
// can reach (a cluster of one).
//
// There are two ways to run. With URLs set, the node joins an existing
// NATS deployment as a client. Without, it runs a NATS server inside the
// process and connects to it in-process; Listen and Routes join these
// embedded servers into a cluster over NATS routes, so a cluster is a few
// wsd processes and nothing else.
type Options struct {
	// Node is this node's id: the origin of its publishes, the name under
	// which its counts and connections are known (connection ids are
	// "node.connid", see FormatConnID), and the address of direct sends.
	// It must be unique in the cluster: at most 128 bytes of printable
	// ASCII other than space. "" means a random id of 12 hex digits, new
	// at each start.
	Node string

	// Prefix is the first token(s) of every subject the nodes use (see the
	// package doc): nodes share topics only with the nodes of the same
	// Prefix on the same NATS. Dot-separated tokens of printable ASCII,
	// without wildcards, not starting with '$'. "" means DefaultPrefix.
	Prefix string

	// URLs, if set, are the servers of an existing NATS deployment
	// ("nats://host:4222", "tls://host:4222"); the node connects to one of
	// them and runs no server of its own. Listen, Routes, ClientListen,
	// ClusterName and MaxPayload must then be empty.
	URLs []string
	// CredsFile is a NATS credentials file (user JWT and nkey seed) for
	// URLs (nats.UserCredentials). "" means none.
	CredsFile string
	// TLSCAFile holds PEM CA certificates that verify the URLs' servers
	// (nats.RootCAs). "" means the system roots (for tls:// URLs).
	TLSCAFile string

	// Listen is the host:port on which the embedded server accepts routes
	// from the other nodes ("10.0.0.5:6248"); port 0 picks a free port
	// (see ClusterAddr). "" means no cluster. The port is unauthenticated
	// and unencrypted: bind it to a private network.
	Listen string
	// Routes are the other nodes' Listen addresses, "nats://host:port"
	// (listing this node's own address too is fine, so every node can
	// share one list). A node needs a route to one member to join: the
	// servers tell each other about the rest. Requires Listen.
	Routes []string
	// ClusterName names the embedded servers' cluster; servers of another
	// name refuse the routes. "" means DefaultClusterName.
	ClusterName string
	// ClientListen, if set, is a host:port on which the embedded server
	// also accepts NATS clients (the nats CLI, nodes running with URLs);
	// the node itself reaches its server in-process. "" means none, or
	// with Listen a free port on 127.0.0.1 (nats-server does not route
	// without a client port).
	ClientListen string
	// MaxPayload caps a message through the embedded server (a publish's
	// payload plus its topics and a few dozen bytes). 0 means NATS's
	// default, 1 MiB; at most 64 MiB. A larger publish fails (not with
	// ErrBrokerUnavailable). With URLs the servers' max_payload applies.
	MaxPayload int
	// MaxPending is the most bytes the embedded server queues for one of
	// its clients, this node's own connection among them: past it, the
	// server closes the connection as a slow consumer and what it queued
	// is lost (see Stats.SlowConsumer). A node that takes publications in
	// more slowly than they come (a publisher on another node outrunning
	// it) loses nothing as long as the backlog fits. 0 means
	// DefaultMaxPending; at least MaxPayload (1 MiB by default). With
	// URLs the servers' max_pending applies.
	MaxPending int64
	// WriteDeadline is how long the embedded server waits for one write to
	// a client, this node's connection among them, before it closes it as
	// a slow consumer. Its routes to the other nodes' servers have the
	// same deadline: a route past it is a slow consumer too, closed only
	// when nothing of the write went out (Stats.SlowConsumerRoutes). 0
	// means DefaultWriteDeadline. With URLs the servers' write_deadline
	// applies.
	WriteDeadline time.Duration

	// ReconnectWait is the pause between reconnection attempts; nats.go
	// retries forever and subscribes again to everything on reconnection.
	// 0 means DefaultReconnectWait.
	ReconnectWait time.Duration
	// PingInterval is how often the client checks that the server still
	// answers; a connection is declared lost after two unanswered pings.
	// 0 means DefaultPingInterval.
	PingInterval time.Duration
	// RequestTimeout bounds Flush, WaitInterest and SendTo when their ctx
	// has no deadline. 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// ReceiveBuffer is how many received publications may wait for the
	// hub. Past it nats.go drops them (counted in Stats.SlowConsumer). The
	// hub takes each in microseconds without ever blocking (a loop that is
	// too far behind skips it: broadcast.Options.MaxQueued), so only a
	// stalled process fills it. 0 means DefaultReceiveBuffer.
	ReceiveBuffer int

	// HeartbeatInterval is how often the node announces itself and its
	// presence counts; peers forget a node after three missed heartbeats.
	// 0 means DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// GatherTimeout is how long TopicCounts and AllTopics wait for the
	// nodes' answers (they return earlier once every node known from
	// heartbeats has answered). 0 means DefaultGatherTimeout.
	GatherTimeout time.Duration

	// History, if not nil, names the topics that keep history, on
	// JetStream (see history.go): the NATS server must have JetStream on
	// (the embedded server then runs it; with Listen, clustered: see
	// embedded_js_cluster.go). The hub's
	// broadcast.Options.History should be the same function. nil: no
	// topic keeps history in NATS.
	History func(topic string) broadcast.HistoryPolicy
	// HistoryLimits are the stream's limits: messages kept per topic and
	// their age (0: no age limit); the largest of History's policies.
	HistoryLimits broadcast.HistoryPolicy
	// HistoryMemory keeps the stream in memory rather than in files: it is
	// lost (a new epoch) when the server restarts.
	HistoryMemory bool
	// HistoryDir is the embedded server's JetStream directory. "" means
	// a directory named after the node under the system's temporary
	// directory (embedded_js_cluster.go), so nodes on one host do not share one.
	HistoryDir string

	// Abort, once closed, stops New waiting: for the embedded server to
	// take connections (up to 10 s), and for the JetStream of embedded
	// servers joined by routes (up to DefaultJetStreamWait for its meta
	// leader, and as long again for its stream). New then stops what it
	// started and returns ErrAborted. nil: New waits its full time.
	Abort <-chan struct{}

	// Logger gets connection events (lost, re-established, slow consumer)
	// and the embedded server's notices, warnings and errors. nil means
	// zap.NewNop().
	Logger *zap.Logger
}

// Defaults of Options fields.
const (
	DefaultPrefix            = "wsd"
	DefaultClusterName       = "wsd"
	DefaultReconnectWait     = time.Second
	DefaultPingInterval      = 5 * time.Second
	DefaultRequestTimeout    = 2 * time.Second
	DefaultReceiveBuffer     = 1 << 16
	DefaultMaxPending        = 256 << 20 // four times nats-server's default
	DefaultWriteDeadline     = 30 * time.Second
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultGatherTimeout     = 500 * time.Millisecond
)

// maxNodeLen bounds Options.Node.
const maxNodeLen = 128

// withDefaults returns a copy of o with defaults filled in, or the first
// setting that is not valid.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.ClusterName == "" && len(o.URLs) == 0 {
		o.ClusterName = DefaultClusterName
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.ReconnectWait, DefaultReconnectWait},
		{&o.PingInterval, DefaultPingInterval},
		{&o.RequestTimeout, DefaultRequestTimeout},
		{&o.HeartbeatInterval, DefaultHeartbeatInterval},
		{&o.GatherTimeout, DefaultGatherTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.ReceiveBuffer == 0 {
		o.ReceiveBuffer = DefaultReceiveBuffer
	}
	if len(o.URLs) == 0 {
		if o.MaxPending == 0 {
			o.MaxPending = DefaultMaxPending // above the largest MaxPayload
		}
		if o.WriteDeadline == 0 {
			o.WriteDeadline = DefaultWriteDeadline
		}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o, o.validate()
}

func (o *Options) validate() error {
	if o.Node != "" {
		if err := checkNode(o.Node); err != nil {
			return err
		}
	}
	if err := checkPrefix(o.Prefix); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"ReconnectWait": o.ReconnectWait, "PingInterval": o.PingInterval, "RequestTimeout": o.RequestTimeout,
		"HeartbeatInterval": o.HeartbeatInterval, "GatherTimeout": o.GatherTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("natsbroker: %s %v is negative", name, d)
		}
	}
	if o.ReceiveBuffer < 0 {
		return fmt.Errorf("natsbroker: ReceiveBuffer %d is negative", o.ReceiveBuffer)
	}
	if len(o.URLs) > 0 {
		switch {
		case o.Listen != "", len(o.Routes) > 0, o.ClientListen != "", o.ClusterName != "", o.MaxPayload != 0, o.MaxPending != 0, o.WriteDeadline != 0:
			return errors.New("natsbroker: URLs join an existing NATS deployment; Listen, Routes, ClientListen, ClusterName, MaxPayload, MaxPending and WriteDeadline are for the embedded server")
		}
		for _, u := range o.URLs {
			if strings.TrimSpace(u) == "" || strings.Contains(u, ",") {
				return fmt.Errorf("natsbroker: URLs entry %q: one server URL per entry", u)
			}
		}
		return nil
	}
	if o.CredsFile != "" || o.TLSCAFile != "" {
		return errors.New("natsbroker: CredsFile and TLSCAFile are for URLs; the embedded server is reached in-process")
	}
	if o.History != nil && o.Listen != "" && len(o.Routes) == 0 {
		return errors.New("natsbroker: History with Listen needs Routes: the embedded servers' JetStream is clustered, and its stream lives on the nodes of Routes")
	}
	if len(o.Routes) > 0 && o.Listen == "" {
		return errors.New("natsbroker: Routes need Listen: the other nodes route back to this node's Listen address")
	}
	if o.Listen != "" {
		if _, _, err := splitListen(o.Listen); err != nil {
			return fmt.Errorf("natsbroker: Listen: %w", err)
		}
	}
	if o.ClientListen != "" {
		if _, _, err := splitListen(o.ClientListen); err != nil {
			return fmt.Errorf("natsbroker: ClientListen: %w", err)
		}
	}
	for _, r := range o.Routes {
		if _, err := parseRoute(r); err != nil {
			return err
		}
	}
	if o.MaxPayload < 0 || o.MaxPayload > 64<<20 {
		return fmt.Errorf("natsbroker: MaxPayload %d is not between 0 and 64 MiB", o.MaxPayload)
	}
	payload := int64(o.MaxPayload)
	if payload == 0 {
		payload = 1 << 20 // NATS's default
	}
	if o.MaxPending < payload {
		return fmt.Errorf("natsbroker: MaxPending %d is below the largest message, MaxPayload (%d)", o.MaxPending, payload)
	}
	if o.WriteDeadline < 0 {
		return fmt.Errorf("natsbroker: WriteDeadline %v is negative", o.WriteDeadline)
	}
	if strings.ContainsAny(o.ClusterName, " \t\r\n") {
		return fmt.Errorf("natsbroker: ClusterName %q contains whitespace", o.ClusterName)
	}
	return nil
}

// checkNode reports whether id can be a node id.
func checkNode(id string) error {
	if id == "" || len(id) > maxNodeLen {
		return fmt.Errorf("natsbroker: node id %q: 1 to %d bytes", id, maxNodeLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("natsbroker: node id %q: only printable ASCII other than space", id)
		}
	}
	return nil
}

// checkPrefix reports whether p can start subjects.
func checkPrefix(p string) error {
	if strings.HasPrefix(p, "$") {
		return fmt.Errorf("natsbroker: Prefix %q starts with '$', which NATS reserves", p)
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("natsbroker: Prefix %q has an empty token", p)
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c >= 0x7f || c == '*' || c == '>' {
				return fmt.Errorf("natsbroker: Prefix %q: tokens are printable ASCII without space or wildcards", p)
			}
		}
	}
	return nil
}

// splitListen splits a host:port; port 0 becomes -1, NATS's "any free
// port".
func splitListen(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// parseRoute parses one of Options.Routes.
func parseRoute(r string) (*url.URL, error) {
	u, err := url.Parse(r)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route") || u.Port() == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("natsbroker: route %q: want nats://host:port", r)
	}
	return u, nil
}
