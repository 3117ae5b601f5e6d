package main

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/natsbroker"
)

// The admin API of history:
//
//	GET /api/history/{topic}?since=OFFSET&limit=N   the messages after OFFSET (default 0: all held), oldest first
//
// and its metrics (wsd_history_*).

// Bounds of GET /api/history.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 10000
)

// addHistoryRoutes adds GET /api/history and the history metrics.
func (a *admin) addHistoryRoutes() {
	a.mux.HandleFunc("GET /api/history/{topic...}", a.auth(a.history))
	m := historyMetrics{hub: a.hub}
	if a.cluster != nil {
		m.stream = a.cluster.b
	}
	a.registry.MustRegister(m)
}

// historyMessage is one message of GET /api/history: data for a text
// message that is valid UTF-8, data_base64 otherwise.
type historyMessage struct {
	Offset     uint64    `json:"offset"`
	Time       time.Time `json:"time"`
	Data       *string   `json:"data,omitempty"`
	DataBase64 *string   `json:"data_base64,omitempty"`
}

// history answers GET /api/history/{topic}: {"topic":"news","offset":12,
// "epoch":"...","messages":[...]}, 404 for a topic that keeps no history.
func (a *admin) history(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if why := checkTopic(topic); why != "" {
		writeError(w, http.StatusBadRequest, why)
		return
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since is an offset: a whole number, 0 or more")
			return
		}
		since = n
	}
	limit := defaultHistoryLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHistoryLimit {
			writeError(w, http.StatusBadRequest, "limit is a number of messages from 1 to "+strconv.Itoa(maxHistoryLimit))
			return
		}
		limit = n
	}
	msgs, pos, ok := a.hub.History(topic, since, limit)
	if !ok {
		writeError(w, http.StatusNotFound, "topic "+quoteTopic(topic)+" keeps no history (see -history)")
		return
	}
	out := make([]historyMessage, len(msgs))
	for i, m := range msgs {
		out[i] = historyMessage{Offset: m.Offset, Time: m.Time.UTC()}
		if m.Op == codec.OpText && utf8.Valid(m.Payload) {
			s := string(m.Payload)
			out[i].Data = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.Payload)
			out[i].DataBase64 = &s
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Topic    string           `json:"topic"`
		Offset   uint64           `json:"offset"`
		Epoch    string           `json:"epoch"`
		Messages []historyMessage `json:"messages"`
	}{topic, pos.Offset, pos.Epoch, out})
}

// historyMetrics exports the hub's history figures, and in a cluster
// the JetStream history's stored publishes.
type historyMetrics struct {
	hub    *broadcast.Hub
	stream *natsbroker.Broker // nil: not in a cluster
}

var (
	descHistTopics    = prometheus.NewDesc("wsd_history_topics", "Topics that keep history (-history).", nil, nil)
	descHistMessages  = prometheus.NewDesc("wsd_history_messages", "Messages held in history, all topics.", nil, nil)
	descHistBytes     = prometheus.NewDesc("wsd_history_bytes", "Bytes of the frames held in history (and of their JSON envelopes, once made).", nil, nil)
	descHistRecovery  = prometheus.NewDesc("wsd_history_recoveries_total", "Subscriptions that asked to resume from a position, by result: recovered (every missed message replayed) or failed (history no longer reached back, or another epoch: recovered false).", []string{"result"}, nil)
	descHistAttempted = prometheus.NewDesc("wsd_history_recoveries_attempted_total", "Subscriptions that asked to resume from a position.", nil, nil)
	descHistReplayed  = prometheus.NewDesc("wsd_history_replayed_total", "Messages replayed to resuming subscribers.", nil, nil)
	descHistForgotten = prometheus.NewDesc("wsd_history_forgotten_total", "Topics whose history was forgotten: every message expired and no subscriber left (a later one starts in a new epoch).", nil, nil)
	descHistStored    = prometheus.NewDesc("wsd_history_stored_total", "In a cluster with JetStream history: publishes to topics with history that the stream confirmed storing, one per topic.", nil, nil)
	descHistNotStored = prometheus.NewDesc("wsd_history_not_stored_total", "In a cluster with JetStream history: publishes to topics with history that the stream refused (stream deleted, JetStream unavailable), did not confirm in time, or whose connection was lost before it confirmed, one per topic.", nil, nil)
)

func (m historyMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHistTopics, descHistMessages, descHistBytes, descHistRecovery, descHistAttempted, descHistReplayed, descHistForgotten, descHistStored, descHistNotStored} {
		ch <- d
	}
}

func (m historyMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.hub.HistoryStats()
	ch <- prometheus.MustNewConstMetric(descHistTopics, prometheus.GaugeValue, float64(s.Topics))
	ch <- prometheus.MustNewConstMetric(descHistMessages, prometheus.GaugeValue, float64(s.Messages))
	ch <- prometheus.MustNewConstMetric(descHistBytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(descHistAttempted, prometheus.CounterValue, float64(s.Attempted))
	ch <- prometheus.MustNewConstMetric(descHistRecovery, prometheus.CounterValue, float64(s.Recovered), "recovered")
	ch <- prometheus.MustNewConstMetric(descHistRecovery, prometheus.CounterValue, float64(s.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(descHistReplayed, prometheus.CounterValue, float64(s.Replayed))
	ch <- prometheus.MustNewConstMetric(descHistForgotten, prometheus.CounterValue, float64(s.Forgotten))
	if m.stream != nil {
		js := m.stream.HistoryStats()
		ch <- prometheus.MustNewConstMetric(descHistStored, prometheus.CounterValue, float64(js.Stored))
		ch <- prometheus.MustNewConstMetric(descHistNotStored, prometheus.CounterValue, float64(js.NotStored))
	}
}
