package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// The admin API of a node of a cluster: publishes confirmed by NATS,
// cluster-wide topic counts, direct sends to a connection of any node,
// health and metrics of the broker.

// join makes the admin API that of a node of cl.
func (a *admin) join(cl *cluster) {
	a.cluster = cl
	a.registry.MustRegister(brokerMetrics{cl: cl, hub: a.hub})
}

// connRef is a connection id of a publish request ("to", "exclude"): a
// string, "node.42" in a cluster or "42", or a number as before clusters
// (0 for none).
type connRef string

func (r *connRef) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		return json.Unmarshal(b, (*string)(r))
	}
	var n uint64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf(`a connection id is a string ("node.42") or a positive number, not %s`, b)
	}
	if n != 0 {
		*r = connRef(strconv.FormatUint(n, 10))
	}
	return nil
}

// sendTo answers a publish request with "to": one message to one
// connection, of this node or, in a cluster, of any node.
func (a *admin) sendTo(ctx context.Context, w http.ResponseWriter, to string, op codec.OpCode, payload []byte) {
	node, id, err := a.cluster.parseConnID(to)
	if err != nil {
		writeError(w, http.StatusBadRequest, `"to": `+err.Error())
		return
	}
	switch {
	case a.cluster != nil:
		if node == "" {
			node = a.cluster.b.Node()
		}
		err = a.cluster.b.SendTo(ctx, node, id, op, payload)
	default:
		if err = a.hub.SendTo(id, op, payload); errors.Is(err, engine.ErrClosed) {
			err = broadcast.ErrNoConn
		}
	}
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, sendResult{To: to})
	case errors.Is(err, broadcast.ErrNoConn):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no connection %s: it closed, or never was", to))
	case errors.Is(err, natsbroker.ErrNoNode):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no connection %s: no node %q in the cluster", to, node))
	default:
		a.brokerFailure(ctx, w, "send", err, http.StatusConflict)
	}
}

// sendResult is the answer to a publish request with "to": the message
// was handed to the connection.
type sendResult struct {
	To string `json:"to"`
}

// clusterPublish publishes m through the broker and answers once NATS has
// it. exclude is the node of m.Exclude ("" for this node).
func (a *admin) clusterPublish(ctx context.Context, w http.ResponseWriter, m broadcast.Message, exclude string) {
	var (
		n   int
		pos []broadcast.TopicPosition
		err error
	)
	if exclude == "" {
		var res broadcast.Result
		res, pos, err = a.hub.PublishWaitPositions(ctx, m)
		n = res.Subscriptions
	} else {
		n, pos, err = a.cluster.publishExcluding(ctx, a.hub, exclude, m)
	}
	if err != nil {
		a.brokerFailure(ctx, w, "publish", err, http.StatusBadGateway)
		return
	}
	writeJSON(w, http.StatusOK, clusterPublishResult{Topics: m.Topics, Node: a.cluster.b.Node(), LocalRecipients: n, Positions: pos})
}

// clusterPublishResult is the answer to POST /api/publish in a cluster:
// NATS has the message, and each node delivers it to its subscribers as it
// comes (GET /api/topics/{name}?scope=cluster counts them).
type clusterPublishResult struct {
	Topics          []string `json:"topics"`
	Node            string   `json:"node"`             // the node that published it
	LocalRecipients int      `json:"local_recipients"` // subscriptions to the topics on that node at publish time
	// Positions the message took in the JetStream history of its topics
	// that keep history (-history with -nats-url), as the stream stored
	// it: its sequence and epoch (natsbroker.Broker.PublishStored).
	Positions []broadcast.TopicPosition `json:"positions,omitempty"`
}

// publishExcluding publishes m, leaving out connection m.Exclude of node:
// it goes as if node had published it, since a node applies the exclusion
// of its own publishes only (broadcast.BrokerMessage.Origin). It returns
// this node's subscriptions to m's topics, once NATS has the message, and
// the positions the stream gave it on its topics with history.
func (cl *cluster) publishExcluding(ctx context.Context, hub *broadcast.Hub, node string, m broadcast.Message) (int, []broadcast.TopicPosition, error) {
	n := 0
	for _, t := range m.Topics {
		n += hub.Count(t)
	}
	bm := broadcast.BrokerMessage{Topics: m.Topics, Op: m.Op, Payload: m.Payload, Origin: node, Exclude: m.Exclude}
	pos, err := cl.b.PublishStored(ctx, &bm)
	if err != nil {
		cl.publishErrors.Add(1)
	}
	return n, pos, err
}

// brokerFailure answers a request that failed in the broker: 503 with
// Retry-After when the JetStream history did not store the message (the
// stream refused it or did not ack it) or while NATS is unreachable (the
// message may not be delivered), 504 when NATS did not confirm in time,
// otherwise other with the broker's reason.
func (a *admin) brokerFailure(ctx context.Context, w http.ResponseWriter, what string, err error, other int) {
	switch {
	case errors.Is(err, natsbroker.ErrNotStored):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s: not stored: the history stream refused the message or did not confirm it, so it may not be delivered or kept; try again later (%v)", what, err))
	case errors.Is(err, broadcast.ErrBrokerUnavailable):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s: NATS is unreachable, so the message may not be delivered; try again later (%v)", what, err))
	case ctx.Err() != nil:
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("%s: NATS did not confirm within %v: the message may or may not be delivered (%v)", what, a.wait, err))
	default:
		writeError(w, other, fmt.Sprintf("%s: %v", what, err))
	}
}

// scope is the answer of GET /api/topics?scope=: this node's counts, or
// the cluster's.
type scope int

const (
	scopeBad scope = iota // refused, and answered
	scopeLocal
	scopeCluster
)

// scope reads the scope of a topics request, and answers 400 for one it
// cannot serve.
func (a *admin) scope(w http.ResponseWriter, r *http.Request) scope {
	switch r.URL.Query().Get("scope") {
	case "", "local":
		return scopeLocal
	case "cluster":
		if a.cluster != nil {
			return scopeCluster
		}
		writeError(w, http.StatusBadRequest, "scope=cluster: this wsd is not in a cluster (no -nats-url or -nats-listen), so its own topics (scope=local) are all there is")
		return scopeBad
	}
	writeError(w, http.StatusBadRequest, "scope: want local (the default) or cluster")
	return scopeBad
}

// clusterTopicsReply is the answer to GET /api/topics?scope=cluster.
type clusterTopicsReply struct {
	Topics  []broadcast.TopicInfo            `json:"topics"`  // the sums over the nodes that answered
	Nodes   map[string][]broadcast.TopicInfo `json:"nodes"`   // each node's own, by node id
	Missing []string                         `json:"missing"` // nodes alive (heartbeats) that did not answer in time
}

func (a *admin) clusterTopics(w http.ResponseWriter, r *http.Request) {
	byNode, err := a.cluster.b.AllTopics(r.Context())
	if err != nil {
		a.brokerFailure(r.Context(), w, "topics", err, http.StatusBadGateway)
		return
	}
	for node, ts := range byNode {
		if ts == nil {
			byNode[node] = []broadcast.TopicInfo{}
		}
	}
	writeJSON(w, http.StatusOK, clusterTopicsReply{Topics: natsbroker.SumTopics(byNode), Nodes: byNode, Missing: missing(a.cluster, byNode)})
}

// clusterTopicReply is the answer to GET /api/topics/{name}?scope=cluster.
type clusterTopicReply struct {
	Name        string         `json:"name"`
	Subscribers int            `json:"subscribers"` // the sum over the nodes that answered
	Nodes       map[string]int `json:"nodes"`       // each node's, by node id
	Missing     []string       `json:"missing"`     // nodes alive (heartbeats) that did not answer in time
}

func (a *admin) clusterTopic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	byNode, err := a.cluster.b.TopicCounts(r.Context(), name)
	if err != nil {
		a.brokerFailure(r.Context(), w, "topic", err, http.StatusBadGateway)
		return
	}
	sum := 0
	for _, n := range byNode {
		sum += n
	}
	writeJSON(w, http.StatusOK, clusterTopicReply{Name: name, Subscribers: sum, Nodes: byNode, Missing: missing(a.cluster, byNode)})
}

// missing returns the nodes known from heartbeats that are not keys of
// answered.
func missing[V any](cl *cluster, answered map[string]V) []string {
	out := []string{}
	for _, node := range cl.b.Nodes() {
		if _, ok := answered[node]; !ok {
			out = append(out, node)
		}
	}
	return out
}

// clusterHealthReply is the answer to /healthz in a cluster.
type clusterHealthReply struct {
	Status      string        `json:"status"`           // ok or degraded
	Reason      string        `json:"reason,omitempty"` // why it is degraded
	Connections int           `json:"connections"`
	Cluster     clusterHealth `json:"cluster"`
}

// startingReply is the answer to /healthz, 503, while a node of a cluster
// starts its broker (adminListener).
type startingReply struct {
	Status  string `json:"status"`  // starting
	Waiting string `json:"waiting"` // what for: "jetstream quorum" or "nats"
	Reason  string `json:"reason"`
}

// clusterHealth answers /healthz: 200 with "ok", or 503 with "degraded"
// and the reason (see cluster.health).
func (a *admin) clusterHealth(w http.ResponseWriter) {
	reason, info := a.cluster.health()
	reply, status := clusterHealthReply{Status: "ok", Connections: a.stats().Conns, Cluster: info}, http.StatusOK
	if reason != "" {
		reply.Status, reply.Reason, status = "degraded", reason, http.StatusServiceUnavailable
	}
	writeJSON(w, status, reply)
}

// brokerMetrics exports the broker's state and counters to Prometheus.
type brokerMetrics struct {
	cl  *cluster
	hub *broadcast.Hub
}

var (
	descBrokerInfo       = prometheus.NewDesc("wsd_broker_info", "Always 1; the node label is this node's id in the cluster.", []string{"node"}, nil)
	descBrokerConnected  = prometheus.NewDesc("wsd_broker_connected", "1 while the broker reaches NATS (an embedded NATS node always does), else 0.", nil, nil)
	descBrokerRoutes     = prometheus.NewDesc("wsd_broker_routes", "Embedded NATS node: the other NATS nodes it has a route to.", nil, nil)
	descBrokerNodes      = prometheus.NewDesc("wsd_broker_nodes", "wsd nodes alive (from their heartbeats), this one included.", nil, nil)
	descBrokerTopics     = prometheus.NewDesc("wsd_broker_topics", "Topics this node receives from NATS: those with subscribers here.", nil, nil)
	descBrokerIn         = prometheus.NewDesc("wsd_broker_messages_in_total", "Publications received from NATS, one per topic: a publish to two topics this node has subscribers of comes twice, and is delivered once.", nil, nil)
	descBrokerOut        = prometheus.NewDesc("wsd_broker_messages_out_total", "Publications sent to NATS, one per topic of a publish.", nil, nil)
	descBrokerDelivered  = prometheus.NewDesc("wsd_broker_delivered_total", "Publications received from NATS and handed to this node's subscribers.", nil, nil)
	descBrokerDuplicates = prometheus.NewDesc("wsd_broker_duplicates_total", "Extra copies of publications to several topics, dropped (each is delivered once).", nil, nil)
	descBrokerReconnects = prometheus.NewDesc("wsd_broker_reconnects_total", "Times the connection to NATS was re-established.", nil, nil)
	descBrokerErrors     = prometheus.NewDesc("wsd_broker_publish_errors_total", "Publishes that failed in the broker: NATS unreachable, the message refused, or not confirmed (the publish API answered 503, 504 or 502).", nil, nil)
	descBrokerSlow       = prometheus.NewDesc("wsd_broker_slow_consumer_total", "Times NATS dropped publications on their way to this node because it did not take them in fast enough: its embedded NATS node closed its connection as a slow consumer, or its receive buffer overflowed.", nil, nil)
	descBrokerRouteSlow  = prometheus.NewDesc("wsd_broker_route_slow_consumer_total", "Embedded NATS node: times it fell behind on its route to another node's NATS node, a slow consumer (a write to the route took longer than its write deadline): that node's subscribers may have missed messages. 0 with -nats-url.", nil, nil)
	descBrokerMalformed  = prometheus.NewDesc("wsd_broker_malformed_total", "Messages on wsd's subjects that could not be read.", nil, nil)
)

func (m brokerMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descBrokerInfo, descBrokerConnected, descBrokerRoutes, descBrokerNodes, descBrokerTopics, descBrokerIn, descBrokerOut,
		descBrokerDelivered, descBrokerDuplicates, descBrokerReconnects, descBrokerErrors, descBrokerSlow, descBrokerRouteSlow, descBrokerMalformed,
	} {
		ch <- d
	}
}

func (m brokerMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.cl.b.Stats()
	value := func(d *prometheus.Desc, t prometheus.ValueType, v int64) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v))
	}
	connected := int64(0)
	if s.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descBrokerInfo, prometheus.GaugeValue, 1, s.Node)
	value(descBrokerConnected, prometheus.GaugeValue, connected)
	value(descBrokerRoutes, prometheus.GaugeValue, int64(s.Routes))
	value(descBrokerNodes, prometheus.GaugeValue, int64(s.Nodes))
	value(descBrokerTopics, prometheus.GaugeValue, int64(s.Subscriptions))
	value(descBrokerIn, prometheus.CounterValue, s.In)
	value(descBrokerOut, prometheus.CounterValue, s.Out)
	value(descBrokerDelivered, prometheus.CounterValue, s.Delivered)
	value(descBrokerDuplicates, prometheus.CounterValue, s.Duplicates)
	value(descBrokerReconnects, prometheus.CounterValue, s.Reconnects)
	// The hub counts its publishes that the broker refused or did not
	// confirm; publishExcluding goes to the broker directly.
	value(descBrokerErrors, prometheus.CounterValue, m.hub.Stats().BrokerErrors+m.cl.publishErrors.Load())
	value(descBrokerSlow, prometheus.CounterValue, s.SlowConsumer)
	value(descBrokerRouteSlow, prometheus.CounterValue, s.SlowConsumerRoutes)
	value(descBrokerMalformed, prometheus.CounterValue, s.Malformed)
}
