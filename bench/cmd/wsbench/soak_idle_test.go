package main

import (
	"slices"
	"strings"
	"testing"
)

// -idle-topic turns the idle scenario's wsd into a push server whose
// clients subscribe, and nothing else.
func TestIdleTopicSpec(t *testing.T) {
	p := &plan{idleTopic: "room a"}
	for _, tc := range []struct {
		server, scenario string
		push             bool
	}{
		{"wsd", "idle", true},
		{"wsd", "echo", false},
		{"wsd", "connect", false},
		{"gorilla", "idle", false},
	} {
		spec := idleTopicSpec(p, specs["wsd"], tc.scenario)
		if tc.server != "wsd" {
			spec = idleTopicSpec(p, serverSpec{name: tc.server, args: specs["wsd"].args, path: specs["wsd"].path}, tc.scenario)
		}
		args, path := spec.args("wsd", "echo", "a", "d"), spec.path("echo")
		push := slices.Equal(args[len(args)-2:], []string{"-mode", "push"})
		if push != tc.push || (path == "/ws?topics=room+a") != tc.push {
			t.Errorf("%s %s: args %q, path %q; want push mode and the topic: %v", tc.server, tc.scenario, args, path, tc.push)
		}
	}
	if got := idleTopicSpec(&plan{}, specs["wsd"], "idle").path("echo"); got != "/ws" {
		t.Errorf("without -idle-topic: path %q", got)
	}
}

func TestCheckIdleTopic(t *testing.T) {
	for _, tc := range []struct {
		topic   string
		servers []string
		err     string
	}{
		{"", []string{"wsd", "gorilla"}, ""},
		{"x", []string{"wsd"}, ""},
		{"x", []string{"wsd", "nbio"}, "not nbio"},
	} {
		err := checkIdleTopic(tc.topic, tc.servers)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q %v: %v, want %q", tc.topic, tc.servers, err, tc.err)
		}
	}
}
