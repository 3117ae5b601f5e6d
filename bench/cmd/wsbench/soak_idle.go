package main

import (
	"fmt"
	"net/url"
	"strings"
)

// idleTopicSpec makes the idle scenario's wsd a push server whose clients
// each subscribe to one topic (-idle-topic, ?topics=): what an idle push
// connection costs with its subscription, against the plain idle
// connection of the other runs. Other scenarios are unchanged; the flag
// measures wsd alone (checkIdleTopic), so that no table puts a subscribed
// wsd beside servers that hold no subscription.
func idleTopicSpec(p *plan, spec serverSpec, scenario string) serverSpec {
	if p.idleTopic == "" || scenario != "idle" || spec.name != "wsd" {
		return spec
	}
	args, topic := spec.args, p.idleTopic
	spec.args = func(bin, mode, addr, debug string) []string {
		return append(args(bin, mode, addr, debug), "-mode", "push") // the last -mode wins
	}
	spec.path = func(string) string { return "/ws?topics=" + url.QueryEscape(topic) }
	return spec
}

// checkIdleTopic refuses -idle-topic with servers other than wsd.
func checkIdleTopic(topic string, servers []string) error {
	if topic == "" {
		return nil
	}
	for _, s := range servers {
		if s != "wsd" {
			return fmt.Errorf("-idle-topic measures wsd alone (push mode), not %s: give -servers wsd (have %s)", s, strings.Join(servers, ","))
		}
	}
	return nil
}
