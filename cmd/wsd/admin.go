package main

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// admin is the daemon's HTTP API on its own listener (net/http, off the
// event loops): publish, topics, health, metrics and optional pprof.
type admin struct {
	hub      *broadcast.Hub
	stats    func() engine.Stats
	token    string
	maxMsg   int64         // largest payload that may be published; 0: no limit
	maxBody  int64         // largest body of POST /api/publish; 0: no limit
	wait     time.Duration // how long POST /api/publish waits for the event loops' counts
	mux      *http.ServeMux
	registry *prometheus.Registry
	cluster  *cluster // nil for a node alone (see join)
	authn    *authn   // -auth: users and identities (admin_auth.go); nil when off
}

// newAdmin builds the admin handler. token, if not empty, is required as
// "Authorization: Bearer TOKEN" on /api/. maxMessage bounds published
// payloads (larger: 413) as -max-message-size bounds received ones, and
// like it, 0 means no limit.
func newAdmin(hub *broadcast.Hub, stats func() engine.Stats, token string, maxMessage int64, withPprof bool) *admin {
	a := &admin{hub: hub, stats: stats, token: token, mux: http.NewServeMux(), wait: defaultPublishWait}
	a.maxMsg = maxMessage
	a.maxBody = publishBodyLimit(maxMessage)
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &metrics{a: a})

	a.mux.HandleFunc("POST /api/publish", a.auth(a.publish))
	a.mux.HandleFunc("/api/publish", methodNotAllowed("POST"))
	a.mux.HandleFunc("GET /api/topics", a.auth(a.topics))
	a.mux.HandleFunc("GET /api/topics/{name...}", a.auth(a.topic))
	a.mux.HandleFunc("GET /healthz", a.health)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	if withPprof {
		a.mux.HandleFunc("/debug/pprof/", pprof.Index)
		a.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		a.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return a
}

// publishBodyLimit bounds the body of a publish request: room for the
// largest payload as base64 (4/3 of it) and the JSON around it. It is 0 (no
// limit) when payloads have no limit, or one too large for that room to fit
// an int64.
func publishBodyLimit(maxMessage int64) int64 {
	if maxMessage <= 0 || maxMessage > math.MaxInt64/4 {
		return 0
	}
	return maxMessage*4/3 + 64<<10
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// adminListener is the admin listener. Until serve gives it the admin API it
// answers every request 503, /healthz with its startingReply: a node of a
// cluster opens it before its broker starts, which may take minutes (a
// JetStream quorum), so that probes see a live process that is not ready.
type adminListener struct {
	srv      *http.Server
	admin    atomic.Pointer[admin] // nil until serve
	starting startingReply
}

// listenAdmin opens the admin listener of cfg and serves on it, answering
// starting until serve.
func listenAdmin(cfg *config, certs *certStore, log *zap.Logger, starting startingReply) (*adminListener, error) {
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	s := &adminListener{starting: starting}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if cfg.AdminTLS {
		s.srv.TLSConfig = serverTLS(cfg, certs) // without -tls-client-ca: the API token guards it
		go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = s.srv.Serve(ln) }()
	}
	log.Info("admin listening", zap.String("addr", ln.Addr().String()), zap.Bool("https", cfg.AdminTLS), zap.Bool("token", cfg.APIToken != ""), zap.Bool("pprof", cfg.Pprof))
	return s, nil
}

func (s *adminListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a := s.admin.Load(); a != nil {
		a.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	if r.URL.Path == "/healthz" {
		writeJSON(w, http.StatusServiceUnavailable, s.starting)
		return
	}
	writeError(w, http.StatusServiceUnavailable, "starting: "+s.starting.Reason+"; try again later")
}

// serve answers with a from now on. Safe on nil.
func (s *adminListener) serve(a *admin) {
	if s != nil {
		s.admin.Store(a)
	}
}

// close closes the listener and its connections. Safe on nil.
func (s *adminListener) close() {
	if s != nil {
		_ = s.srv.Close()
	}
}

func (a *admin) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token != "" {
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			// The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wsd"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
				return
			}
		}
		next(w, r)
	}
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "use "+allow)
	}
}

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	Topic      string   `json:"topic"`
	Topics     []string `json:"topics"`
	Data       *string  `json:"data"`
	DataBase64 *string  `json:"data_base64"`
	Exclude    connRef  `json:"exclude"`
	To         connRef  `json:"to"`
	User       string   `json:"user"` // every connection of a user (admin_auth.go)
}

func (a *admin) publish(w http.ResponseWriter, r *http.Request) {
	var req publishRequest
	body := r.Body
	if a.maxBody > 0 {
		body = http.MaxBytesReader(w, body, a.maxBody)
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", a.maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one JSON value")
		return
	}
	topics := req.Topics
	if req.Topic != "" {
		topics = append([]string{req.Topic}, topics...)
	}
	switch {
	case req.To != "" && (len(topics) > 0 || req.Exclude != ""):
		writeError(w, http.StatusBadRequest, `"to" sends to one connection: give no "topic", "topics" or "exclude" with it`)
		return
	case req.User != "" && (len(topics) > 0 || req.To != "" || req.Exclude != ""):
		writeError(w, http.StatusBadRequest, `"user" sends to one user's connections: give no "topic", "topics", "to" or "exclude" with it`)
		return
	case req.To == "" && req.User == "" && len(topics) == 0:
		writeError(w, http.StatusBadRequest, `"topic" or "topics" is required (or "to", a connection id)`)
		return
	}
	for _, t := range topics {
		if t == "" {
			writeError(w, http.StatusBadRequest, "empty topic name")
			return
		}
	}
	var (
		op      codec.OpCode
		payload []byte
	)
	switch {
	case req.Data != nil && req.DataBase64 != nil:
		writeError(w, http.StatusBadRequest, `give "data" (text) or "data_base64" (binary), not both`)
		return
	case req.Data != nil:
		op, payload = codec.OpText, []byte(*req.Data)
	case req.DataBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.DataBase64)
		if err != nil {
			writeError(w, http.StatusBadRequest, `"data_base64" is not valid base64`)
			return
		}
		op, payload = codec.OpBinary, b
	default:
		writeError(w, http.StatusBadRequest, `"data" (text) or "data_base64" (binary) is required`)
		return
	}
	if a.maxMsg > 0 && int64(len(payload)) > a.maxMsg {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("payload of %d bytes is over max-message-size (%d)", len(payload), a.maxMsg))
		return
	}
	if req.User != "" {
		a.publishUser(w, req.User, op, payload)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.wait)
	defer cancel()
	if req.To != "" {
		a.sendTo(ctx, w, string(req.To), op, payload)
		return
	}
	m := broadcast.Message{Topics: topics, Op: op, Payload: payload}
	node := ""
	if req.Exclude != "" {
		var err error
		if node, m.Exclude, err = a.cluster.parseConnID(string(req.Exclude)); err != nil {
			writeError(w, http.StatusBadRequest, `"exclude": `+err.Error())
			return
		}
	}
	if a.cluster != nil {
		a.clusterPublish(ctx, w, m, node)
		return
	}
	res, pos, err := a.hub.PublishWaitPositions(ctx, m)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// The loops have not all handled it yet; it still goes out.
		writeJSON(w, http.StatusAccepted, publishPending{Recipients: res.Subscriptions, Topics: topics, Pending: true, Positions: pos})
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "publish: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, publishResult{
		Recipients: res.Subscriptions, Queued: res.Queued, Dropped: res.Dropped, Closed: res.Closed,
		Overloaded: res.Overloaded, Topics: topics, Positions: pos,
	})
}

// publishResult is the answer to POST /api/publish once every event loop
// has handled the message.
type publishResult struct {
	Recipients int      `json:"recipients"` // subscriptions to the topics at publish time (broadcast.Result.Subscriptions)
	Queued     int      `json:"queued"`     // connections the message was handed to
	Dropped    int      `json:"dropped"`    // connections at -max-buffered that skipped it (-slow-policy drop)
	Closed     int      `json:"closed"`     // connections at -max-buffered closed instead (-slow-policy close)
	Overloaded int      `json:"overloaded"` // event loops that skipped it, -max-queued behind
	Topics     []string `json:"topics"`
	// Positions the message took on its topics that keep history
	// (-history; history.go), alone: in a cluster none.
	Positions []broadcast.TopicPosition `json:"positions,omitempty"`
}

// publishPending is the answer to POST /api/publish when the event loops
// have not all handled the message within admin.wait: it is published,
// but what became of it is not known yet.
type publishPending struct {
	Recipients int                       `json:"recipients"`
	Topics     []string                  `json:"topics"`
	Pending    bool                      `json:"pending"`
	Positions  []broadcast.TopicPosition `json:"positions,omitempty"`
}

// defaultPublishWait is how long POST /api/publish waits for the event
// loops to hand a message to their subscribers before it answers 202.
const defaultPublishWait = 5 * time.Second

func (a *admin) topics(w http.ResponseWriter, r *http.Request) {
	switch a.scope(w, r) {
	case scopeLocal:
		writeJSON(w, http.StatusOK, map[string]any{"topics": a.hub.Topics()})
	case scopeCluster:
		a.clusterTopics(w, r)
	}
}

func (a *admin) topic(w http.ResponseWriter, r *http.Request) {
	switch a.scope(w, r) {
	case scopeLocal:
		name := r.PathValue("name")
		writeJSON(w, http.StatusOK, broadcast.TopicInfo{Name: name, Subscribers: a.hub.Count(name)})
	case scopeCluster:
		a.clusterTopic(w, r)
	}
}

func (a *admin) health(w http.ResponseWriter, r *http.Request) {
	if a.cluster != nil {
		a.clusterHealth(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "connections": a.stats().Conns})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// metrics exports the engine's and the hub's counters to Prometheus.
type metrics struct{ a *admin }

var (
	descConns      = prometheus.NewDesc("wsd_connections", "Open TCP connections (upgraded or not).", nil, nil)
	descUpgrades   = prometheus.NewDesc("wsd_upgrades_total", "Successful WebSocket upgrades.", nil, nil)
	descMsgsIn     = prometheus.NewDesc("wsd_messages_received_total", "Complete messages received.", nil, nil)
	descBytesIn    = prometheus.NewDesc("wsd_received_bytes_total", "Payload bytes of received messages.", nil, nil)
	descFramesOut  = prometheus.NewDesc("wsd_frames_sent_total", "Frames sent (data and control).", nil, nil)
	descBytesOut   = prometheus.NewDesc("wsd_sent_bytes_total", "Bytes of sent frames, headers included.", nil, nil)
	descWrites     = prometheus.NewDesc("wsd_socket_writes_total", "Write or writev calls that carried the sent frames (frames per call is the batching).", nil, nil)
	descCloses     = prometheus.NewDesc("wsd_closes_total", "Connections ended, by close code (1006: without a close handshake; 3xxx, 4xxx, other: codes RFC 6455 does not define).", []string{"code"}, nil)
	descPublished  = prometheus.NewDesc("wsd_published_total", "Publish calls.", nil, nil)
	descCompressed = prometheus.NewDesc("wsd_published_compressed_total", "Publishes sent compressed (permessage-deflate), compressed once each for all the subscribers that negotiated it; one whose compressed form was not smaller goes out plain and is not counted.", nil, nil)
	descDelivered  = prometheus.NewDesc("wsd_delivered_total", "Broadcast frames handed to sockets.", nil, nil)
	descDropped    = prometheus.NewDesc("wsd_dropped_total", "Broadcast frames skipped for slow consumers.", nil, nil)
	descSlowClosed = prometheus.NewDesc("wsd_slow_closed_total", "Connections closed as slow consumers.", nil, nil)
	descTopics     = prometheus.NewDesc("wsd_topics", "Topics with subscribers.", nil, nil)
	descSubs       = prometheus.NewDesc("wsd_subscriptions", "Connection-topic subscriptions.", nil, nil)

	descClosed      = prometheus.NewDesc("wsd_closed_total", "Connections closed by a limit, by reason: backpressure (-max-buffered), write_timeout, budget (-max-buffered-total), rate_limit, message_timeout, slow_consumer (-slow-policy close).", []string{"reason"}, nil)
	descRateDropped = prometheus.NewDesc("wsd_rate_dropped_total", "Messages dropped by -rate-limit-action drop.", nil, nil)
	descUnsent      = prometheus.NewDesc("wsd_unsent_bytes", "Bytes waiting to be sent, and held by partly received messages, on every connection (what -max-buffered-total bounds).", nil, nil)
	descRejected    = prometheus.NewDesc("wsd_rejected_total", "Connections refused before the upgrade, by reason: max_conns (-max-conns, 503), per_ip (-max-conns-per-ip, 429), rate (-handshake-rate-per-ip, 429).", []string{"reason"}, nil)
	descIPTableFull = prometheus.NewDesc("wsd_ip_table_full_total", "Connections admitted without the per-IP limits because the table of addresses was full.", nil, nil)
	descOverloaded  = prometheus.NewDesc("wsd_publish_overloaded_total", "Deliveries of a publish to an event loop skipped because -max-queued bytes were waiting for it.", nil, nil)
)

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConns, descUpgrades, descMsgsIn, descBytesIn, descFramesOut, descBytesOut, descWrites, descCloses,
		descPublished, descCompressed, descDelivered, descDropped, descSlowClosed, descTopics, descSubs,
		descClosed, descRateDropped, descUnsent, descOverloaded, descRejected, descIPTableFull,
	} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.a.stats()
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(descConns, int64(s.Conns))
	counter(descUpgrades, s.Upgrades)
	counter(descMsgsIn, s.MessagesIn)
	counter(descBytesIn, s.BytesIn)
	counter(descFramesOut, s.FramesOut)
	counter(descBytesOut, s.BytesOut)
	counter(descWrites, s.Writes)
	closes := map[string]int64{}
	for _, cc := range s.CloseCodes {
		closes[closeLabel(cc.Code)] += cc.Count
	}
	for label, n := range closes {
		ch <- prometheus.MustNewConstMetric(descCloses, prometheus.CounterValue, float64(n), label)
	}
	gauge(descUnsent, s.Unsent)
	counter(descRateDropped, s.Limits.RateDropped)
	counter(descIPTableFull, s.IPTableFull)
	rj := s.Rejected
	labelled(ch, descRejected, []labelCount{{"max_conns", rj.MaxConns}, {"per_ip", rj.PerIP}, {"rate", rj.Rate}})
	var h broadcast.Stats
	if m.a.hub != nil {
		h = m.a.hub.Stats()
		counter(descPublished, h.Published)
		counter(descCompressed, h.Compressed)
		counter(descDelivered, h.Delivered)
		counter(descDropped, h.Dropped)
		counter(descSlowClosed, h.SlowClosed)
		gauge(descTopics, int64(h.Topics))
		gauge(descSubs, h.Subscriptions)
		counter(descOverloaded, h.Overloaded)
	}
	l := s.Limits
	labelled(ch, descClosed, []labelCount{
		{"backpressure", l.Backpressure}, {"write_timeout", l.WriteTimeout}, {"budget", l.Budget},
		{"rate_limit", l.RateLimit}, {"message_timeout", l.MessageTimeout}, {"slow_consumer", h.SlowClosed},
	})
}

// labelCount is the count of one label value of a counter with one label.
type labelCount struct {
	label string
	n     int64
}

// labelled sends a counter of d for each label value: all of them, zeros
// included, so that every series exists from the start.
func labelled(ch chan<- prometheus.Metric, d *prometheus.Desc, counts []labelCount) {
	for _, c := range counts {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(c.n), c.label)
	}
}

// closeLabel is the code label of wsd_closes_total. Peers choose the codes
// they close with, so only the codes RFC 6455 and its IANA registry define
// (1000-1003 and 1005-1015) keep their number; the others are counted
// together as "3xxx" (registered for libraries and frameworks), "4xxx"
// (private use) or "other" (unassigned or invalid): whatever clients send,
// the metric has at most 18 series.
func closeLabel(code codec.StatusCode) string {
	switch {
	case code >= 1000 && code <= 1015 && code != 1004:
		return strconv.Itoa(int(code))
	case code >= 3000 && code <= 3999:
		return "3xxx"
	case code >= 4000 && code <= 4999:
		return "4xxx"
	}
	return "other"
}
