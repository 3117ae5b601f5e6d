package main

import (
	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/natsbroker"
)

// natsHistory puts the history of the -history topics in NATS JetStream
// when the node is in a cluster: on the NATS deployment of -nats-url (which
// must have JetStream on), or on the embedded NATS nodes of -nats-listen
// and -nats-routes (JetStream in -nats-store-dir, the stream copied on up
// to three nodes). The stream keeps, per topic, the largest size and the
// longest age of the rules (no age limit if a rule has none), and each
// node's memory is a cache in front of it.
func natsHistory(cfg *config, o *natsbroker.Options) {
	rules, _ := parseHistoryRules(cfg.History) // checked when read
	if len(rules) == 0 {
		return
	}
	var lim broadcast.HistoryPolicy
	ttl := true
	for _, r := range rules {
		lim.Size = max(lim.Size, r.policy.Size)
		if r.policy.TTL <= 0 {
			ttl = false
		}
		lim.TTL = max(lim.TTL, r.policy.TTL)
	}
	if !ttl {
		lim.TTL = 0
	}
	o.History, o.HistoryLimits = historyPolicy(rules), lim
}
