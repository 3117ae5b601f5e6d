package auth

import (
	"strings"
	"testing"
)

// TestPatternMatch checks exact, "*", prefix and "{sub}" patterns.
func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, sub, topic string
		want                bool
	}{
		{"news", "", "news", true},
		{"news", "", "news.x", false},
		{"news", "", "new", false},
		{"*", "", "anything.at.all", true},
		{"*", "alice", "user.bob", true},
		{"news.*", "", "news.x", true},
		{"news.*", "", "news.x.y", true},
		{"news.*", "", "news.", true},
		{"news.*", "", "news", false},
		{"news.*", "", "newsletter", false},
		{"news*", "", "newsletter", true},
		{"news*", "", "news", true},
		{"user.{sub}", "alice", "user.alice", true},
		{"user.{sub}", "alice", "user.alic", false},
		{"user.{sub}", "alice", "user.alice2", false},
		{"user.{sub}", "alice", "user.bob", false},
		{"user.{sub}", "", "user.", false},
		{"user.{sub}", "", "user.{sub}", false},
		{"chat.{sub}.*", "alice", "chat.alice.room1", true},
		{"chat.{sub}.*", "alice", "chat.alice", false},
		{"chat.{sub}.*", "alice", "chat.alicex.room1", false},
		{"{sub}", "alice", "alice", true},
		{"{sub}*", "alice", "alice.x", true},
		{"{sub}.{sub}", "a", "a.a", true},
		{"{sub}.{sub}", "a", "a.b", false},
		{"dm.{sub}.to.*", "bob", "dm.bob.to.alice", true},
	}
	for _, c := range cases {
		p, err := compilePattern(c.pattern)
		if err != nil {
			t.Fatalf("compilePattern(%q): %v", c.pattern, err)
		}
		if got := p.match(c.topic, c.sub); got != c.want {
			t.Errorf("%q for sub %q, topic %q: %v, want %v", c.pattern, c.sub, c.topic, got, c.want)
		}
	}
}

// daemonTopicAllowed is the rule of the daemon's -client-publish list
// (cmd/wsd topicAllowed), which patterns without "{sub}" follow.
func daemonTopicAllowed(patterns []string, topic string) bool {
	for _, p := range patterns {
		if p == topic || p == "*" || (strings.HasSuffix(p, "*") && strings.HasPrefix(topic, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// TestPatternDaemonRule checks that patterns match as the daemon's
// -client-publish list does.
func TestPatternDaemonRule(t *testing.T) {
	patterns := []string{"*", "news.*", "news*", "a", "a.b.*", "x*"}
	topics := []string{"a", "a.b", "a.b.c", "news", "news.", "news.x.y", "newsletter", "x", "xy", "y", "*", "a*"}
	for _, s := range patterns {
		p, err := compilePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range topics {
			if got, want := p.match(topic, "u"), daemonTopicAllowed([]string{s}, topic); got != want {
				t.Errorf("%q on %q: %v, the daemon says %v", s, topic, got, want)
			}
		}
	}
}

// TestPatternInvalid checks the patterns compilePattern refuses.
func TestPatternInvalid(t *testing.T) {
	for s, want := range map[string]string{
		"":                       "empty",
		"a*b":                    `"*" is allowed only at the end`,
		"**":                     `"*" is allowed only at the end`,
		"*.news":                 `"*" is allowed only at the end`,
		"a b":                    "space",
		"a,b":                    "comma",
		"a\x00":                  "printable",
		"\xff":                   "not UTF-8",
		"user.{user}":            `"{" and "}" are allowed only in "{sub}"`,
		"user.{sub":              `"{" and "}" are allowed only in "{sub}"`,
		"}":                      `"{" and "}" are allowed only in "{sub}"`,
		strings.Repeat("a", 257): "longer than 256 bytes",
	} {
		_, err := compilePattern(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("compilePattern(%q): %v, want an error with %q", s, err, want)
		}
	}
	for _, s := range []string{"*", "a", "a.*", "{sub}", "x.{sub}.{sub}*", strings.Repeat("a", 256), "é.*"} {
		if _, err := compilePattern(s); err != nil {
			t.Errorf("compilePattern(%q): %v", s, err)
		}
	}
}

// TestSubRule checks the user ids checkSub accepts.
func TestSubRule(t *testing.T) {
	for _, s := range []string{"alice", "42", "a-b_c", "alice@example", "Ünïcödé", "a:b", strings.Repeat("x", 128)} {
		if why := checkSub(s); why != "" {
			t.Errorf("checkSub(%q): %s", s, why)
		}
	}
	for _, s := range []string{"", "a.b", "a b", "a,b", "*", "a>", "{sub}", "a}", "\t", "\xff", strings.Repeat("x", 129)} {
		if checkSub(s) == "" {
			t.Errorf("checkSub(%q) accepts it", s)
		}
	}
}

// TestIdentityPermissions checks personal topics and the anonymous
// identity.
func TestIdentityPermissions(t *testing.T) {
	sub, pub, err := Permissions{Subscribe: []string{"news.*", "room.{sub}.*"}, Publish: []string{"room.{sub}.*"}}.compile()
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{Sub: "bob", subscribe: sub, publish: pub}
	WantPermissions(t, id, map[string]bool{
		"user.bob": true, "user.bo": false, "user.bobb": false, "user.alice": false, "usr.bob": false,
		"news.a": true, "room.bob.1": true, "room.alice.1": false,
	}, map[string]bool{"user.bob": false, "news.a": false, "room.bob.1": true, "room.alice.1": false})

	anon, err := Anonymous(Permissions{Subscribe: []string{"public.*"}})
	if err != nil {
		t.Fatal(err)
	}
	WantPermissions(t, anon, map[string]bool{"public.x": true, "user.": false, "user.x": false, "news.a": false},
		map[string]bool{"public.x": false})
	if _, err := Anonymous(Permissions{Publish: []string{"user.{sub}"}}); err == nil {
		t.Error(`Anonymous accepts "{sub}"`)
	}
	if _, err := Anonymous(Permissions{Subscribe: []string{"a*b"}}); err == nil || !strings.Contains(err.Error(), "anonymous subscribe: topic pattern") {
		t.Errorf("Anonymous with a bad pattern: %v", err)
	}
}

// TestIdentityZeroAllocs checks that permission checks do not allocate.
func TestIdentityZeroAllocs(t *testing.T) {
	sub, pub, err := Permissions{Subscribe: []string{"a", "news.*", "room.{sub}.*"}, Publish: []string{"room.{sub}.*"}}.compile()
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{Sub: "bob", subscribe: sub, publish: pub}
	allocs := testing.AllocsPerRun(1000, func() {
		_ = id.CanSubscribe("user.bob")
		_ = id.CanSubscribe("room.bob.x")
		_ = id.CanSubscribe("nothing")
		_ = id.CanPublish("room.bob.x")
	})
	if allocs != 0 {
		t.Errorf("%v allocations per check", allocs)
	}
}
