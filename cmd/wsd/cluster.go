package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// A cluster is several wsd nodes sharing topics over NATS (natsbroker): a
// publish on any node reaches the subscribers of every node. A node either
// joins an existing NATS deployment (-nats-url) or runs an embedded NATS
// node in its own process, joined to the other nodes' by routes
// (-nats-listen, -nats-routes). Without either, wsd runs alone with its
// in-process hub, as if no cluster code existed.

// cluster is this node's part of a cluster: the broker that carries the
// hub's publishes to the other nodes and back, and answers their queries.
type cluster struct {
	b *natsbroker.Broker
	// routes: the node was given -nats-routes, so it is healthy only with a
	// route to another node.
	routes bool
	// where says how the node reaches NATS, for logs and health.
	where string
	// publishErrors counts the failures of publishExcluding (the hub
	// counts those of its publishes).
	publishErrors atomic.Int64
}

// startCluster starts the broker of cfg's NATS flags: it connects to
// NATS, or starts the embedded NATS node (which listens on -nats-listen).
// Closing abort stops its wait for a JetStream quorum (natsbroker.ErrAborted).
func startCluster(cfg *config, log *zap.Logger, abort <-chan struct{}) (*cluster, error) {
	o := natsOptions(cfg, log)
	o.Abort = abort
	if tuneNATS != nil {
		tuneNATS(&o)
	}
	cl := &cluster{routes: len(o.Routes) > 0, where: "embedded NATS node"}
	if len(o.URLs) > 0 {
		cl.where = "NATS at " + strings.Join(o.URLs, ",")
	} else if o.Listen != "" {
		cl.where = "embedded NATS node, routes on " + o.Listen
	}
	b, err := natsbroker.New(o)
	if err != nil {
		return nil, fmt.Errorf("starting the broker (%s): %w", cl.where, err)
	}
	cl.b = b
	return cl, nil
}

// startingFor is what /healthz says while startCluster runs: with -history
// on embedded NATS nodes, it waits for their JetStream quorum; otherwise it
// starts its embedded NATS node or connects to NATS, usually at once.
func startingFor(cfg *config) startingReply {
	if cfg.NATSListen != "" && cfg.History != "" {
		return startingReply{Status: "starting", Waiting: "jetstream quorum", Reason: fmt.Sprintf(
			"waiting for a quorum of the nodes of -nats-routes to run and elect a JetStream leader, then for the history stream (up to %v each)", natsbroker.DefaultJetStreamWait)}
	}
	return startingReply{Status: "starting", Waiting: "nats", Reason: "starting the embedded NATS node or connecting to NATS"}
}

// tuneNATS, if set, changes the broker's options before it starts: tests
// make a node's embedded NATS node keep little for it, to see it dropped
// as a slow consumer.
var tuneNATS func(*natsbroker.Options)

// slowHold is how long /healthz says degraded after NATS dropped
// publications on their way to this node as from a slow consumer, or the
// node's embedded NATS node fell behind on a route: long enough for health
// checks polling every few seconds to see it.
var slowHold = 30 * time.Second

// attach tells the broker how to reach this node's hub and mode, to answer
// the other nodes: topic counts, direct sends and, in chat mode, presence.
func (cl *cluster) attach(hub *broadcast.Hub, md *mode) {
	l := natsbroker.Local{
		Topics: hub.Topics,
		Count:  hub.Count,
		SendTo: func(id uint64, op codec.OpCode, p []byte) error {
			err := hub.SendTo(id, op, p)
			if errors.Is(err, engine.ErrClosed) {
				return broadcast.ErrNoConn // closing: as good as gone
			}
			return err
		},
	}
	if md.chat != nil {
		// Every topic of the chat hub is a room (presence topics live on
		// a hub of this node alone): share all their counts.
		l.Presence, l.OnPresence = hub.Topics, md.chat.announce
	}
	cl.b.SetLocal(l)
}

// unavailable reports that the broker cannot reach NATS: publishes fail.
func (cl *cluster) unavailable() bool { return !cl.b.Status().Connected }

// presenceChanged tells the other nodes that this node's room counts
// changed.
func (cl *cluster) presenceChanged() { cl.b.PresenceChanged() }

// close leaves the cluster: call it after the engine has shut down. Safe
// on a nil cluster.
func (cl *cluster) close() {
	if cl != nil {
		_ = cl.b.Close()
	}
}

// connID is the id of connection id as clients and the publish API know
// it: "node.42" in a cluster, "42" alone. Safe on a nil cluster.
func (cl *cluster) connID(id uint64) string {
	if cl == nil {
		return strconv.FormatUint(id, 10)
	}
	return cl.b.ConnID(id)
}

// parseConnID reads a connection id of the publish API ("to", "exclude"):
// "node.42" as connID writes it, or a bare number for a connection of this
// node. It returns node "" for this node. Safe on a nil cluster.
func (cl *cluster) parseConnID(s string) (node string, id uint64, err error) {
	if !strings.Contains(s, ".") {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 || s[0] == '+' {
			return "", 0, fmt.Errorf("connection id %q: want a number, or node.number in a cluster", s)
		}
		return "", id, nil
	}
	if cl == nil {
		return "", 0, fmt.Errorf("connection id %q: this wsd is not in a cluster (no -nats-url or -nats-listen), so a connection id is a number", s)
	}
	node, id, err = natsbroker.ParseConnID(s)
	if err != nil {
		return "", 0, fmt.Errorf("connection id %q: want node.number, as the welcome message gives it", s)
	}
	if node == cl.b.Node() {
		node = ""
	}
	return node, id, nil
}

// health is the cluster's part of /healthz: "" when the node is healthy,
// otherwise why it is degraded.
func (cl *cluster) health() (reason string, info clusterHealth) {
	s := cl.b.Stats()
	info = clusterHealth{Node: s.Node, Connected: s.Connected, Nodes: s.Nodes}
	if cl.routes {
		info.Routes = &s.Routes
	}
	switch ago := time.Since(s.LastSlowConsumer); {
	case !s.Connected:
		reason = "not connected to NATS (" + cl.where + "): publishes fail with 503 until it is back"
	case cl.routes && s.Routes == 0:
		reason = "no route to any other node (-nats-routes): this node reaches only its own clients"
	case !s.LastSlowConsumer.IsZero() && ago < slowHold:
		reason = fmt.Sprintf("NATS dropped publications on their way to this node %s ago, as from a slow consumer (publishes came faster than the node took them in; %d times since it started, wsd_broker_slow_consumer_total): its subscribers missed messages",
			ago.Round(time.Second), s.SlowConsumer)
	case !s.LastRouteSlowConsumer.IsZero() && time.Since(s.LastRouteSlowConsumer) < slowHold:
		reason = fmt.Sprintf("this node's embedded NATS node fell behind on its route to another node %s ago, a slow consumer (a write to the route took longer than its write deadline; %d times since it started, wsd_broker_route_slow_consumer_total): that node's subscribers may have missed messages",
			time.Since(s.LastRouteSlowConsumer).Round(time.Second), s.SlowConsumerRoutes)
	}
	return reason, info
}

// clusterHealth is the "cluster" object of /healthz.
type clusterHealth struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"`        // the broker reaches NATS
	Routes    *int   `json:"routes,omitempty"` // with -nats-routes: the other nodes' NATS nodes this one has a route to
	Nodes     int    `json:"nodes"`            // wsd nodes alive, from their heartbeats, this one included
}
