package main

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsdproject/wsd/codec"
)

// authCounts counts what authentication decided, for /metrics.
type authCounts struct {
	authenticated atomic.Int64    // connections given an identity (upgrade or auth message)
	refreshed     atomic.Int64    // tokens replaced by a refresh
	expired       atomic.Int64    // {"op":"expired"} sent
	refused401    atomic.Int64    // upgrades refused with 401
	refused403    atomic.Int64    // upgrades refused with 403 (topics in the URL)
	refused503    atomic.Int64    // upgrades refused with 503 (checks overloaded) or 500
	closes        [6]atomic.Int64 // closes with 4000-4005
}

// countRefusal counts an upgrade refused with status.
func (n *authCounts) countRefusal(status int) {
	switch status {
	case http.StatusUnauthorized:
		n.refused401.Add(1)
	case http.StatusForbidden:
		n.refused403.Add(1)
	default:
		n.refused503.Add(1)
	}
}

// countClose counts a close with an authentication code.
func (n *authCounts) countClose(code codec.StatusCode) {
	if i := int(code) - 4000; i >= 0 && i < len(n.closes) {
		n.closes[i].Add(1)
	}
}

var (
	descAuthUsers     = prometheus.NewDesc("wsd_auth_sessions", "Connections known to authentication: authenticated, anonymous or waiting for their auth message.", nil, nil)
	descAuthOK        = prometheus.NewDesc("wsd_auth_authenticated_total", "Connections given an identity, on the upgrade or by an auth message.", nil, nil)
	descAuthRefreshed = prometheus.NewDesc("wsd_auth_refreshed_total", "Tokens replaced by a refresh message.", nil, nil)
	descAuthExpired   = prometheus.NewDesc("wsd_auth_expired_total", `{"op":"expired"} messages sent at a token's exp.`, nil, nil)
	descAuthRefused   = prometheus.NewDesc("wsd_auth_refused_total", "Upgrades refused by authentication, by HTTP status: 401 (credentials), 403 (topics in the URL), 503 (checks overloaded; 500 counts here too).", []string{"status"}, nil)
	descAuthCloses    = prometheus.NewDesc("wsd_auth_closes_total", "Connections closed by authentication, by close code (4000-4005, see README Authentication).", []string{"code"}, nil)
	descAuthChecks    = prometheus.NewDesc("wsd_auth_checks_total", "Slow checks (signatures, bcrypt) run off the event loops.", nil, nil)
	descAuthQueued    = prometheus.NewDesc("wsd_auth_checks_queued", "Slow checks waiting for a worker.", nil, nil)
	descAuthBusy      = prometheus.NewDesc("wsd_auth_checks_busy_total", "Slow checks refused because the queue was full (answered 503).", nil, nil)
)

// authMetrics exports authCounts and the check pool's counters.
type authMetrics struct{ g *authn }

func (m authMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAuthUsers, descAuthOK, descAuthRefreshed, descAuthExpired, descAuthRefused, descAuthCloses, descAuthChecks, descAuthQueued, descAuthBusy} {
		ch <- d
	}
}

func (m authMetrics) Collect(ch chan<- prometheus.Metric) {
	g := m.g
	n := &g.counts
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g.reg.mu.RLock()
	sessions := len(g.reg.byConn)
	g.reg.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(descAuthUsers, prometheus.GaugeValue, float64(sessions))
	counter(descAuthOK, n.authenticated.Load())
	counter(descAuthRefreshed, n.refreshed.Load())
	counter(descAuthExpired, n.expired.Load())
	counter(descAuthRefused, n.refused401.Load(), "401")
	counter(descAuthRefused, n.refused403.Load(), "403")
	counter(descAuthRefused, n.refused503.Load(), "503")
	for i := range n.closes {
		counter(descAuthCloses, n.closes[i].Load(), strconv.Itoa(4000+i))
	}
	var st struct{ done, busy, queued int64 }
	if g.pool != nil {
		ps := g.pool.Stats()
		st.done, st.busy, st.queued = int64(ps.Completed), int64(ps.Rejected), int64(ps.Queued)
	}
	counter(descAuthChecks, st.done)
	ch <- prometheus.MustNewConstMetric(descAuthQueued, prometheus.GaugeValue, float64(st.queued))
	counter(descAuthBusy, st.busy)
}
