package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// History and recovery in the daemon: -history names the topics that keep
// their last messages (broadcast.HistoryPolicy), push clients that ask for
// ?format=json get every publication in an envelope with its position, and
// a client that subscribes with "since" (or ?since= on the URL) resumes
// from its last position. README "History and recovery" and "Push
// protocol" describe what clients see.

// historyRule is one -history entry: the topics matching pattern keep
// size messages, none older than ttl (0: no age limit).
type historyRule struct {
	pattern string
	policy  broadcast.HistoryPolicy
}

// historyWant describes what -history takes.
const historyWant = `want PATTERN=SIZE or PATTERN=SIZE/TTL entries, comma-separated: a topic, "*" or "prefix*" (e.g. news.*), a size of 1 to 100000 messages and a Go duration (e.g. news.*=100/10m)`

// maxHistorySize bounds one topic's history.
const maxHistorySize = 100000

// addHistoryFlags adds -history to fs, bound to c.History.
func addHistoryFlags(fs *flag.FlagSet, c *config) {
	c.History = ""
	fs.Var(&textValue{p: &c.History, list: true, check: func(s string) *valueError {
		_, err := parseHistoryRules(s)
		return err
	}}, "history", `push and chat: topics that keep their last messages for clients that resume, PATTERN=SIZE[/TTL] comma-separated, e.g. "news.*=100/10m,alerts=20" (first match wins; empty: none)`)
}

// parseHistoryRules reads a -history list.
func parseHistoryRules(s string) ([]historyRule, *valueError) {
	var rules []historyRule
	for _, item := range splitList(s) {
		pattern, spec, ok := strings.Cut(item, "=")
		pattern = strings.TrimSpace(pattern)
		if !ok || pattern == "" || strings.Contains(strings.TrimSuffix(pattern, "*"), "*") {
			return nil, &valueError{"history entry", item, historyWant}
		}
		sizeText, ttlText, hasTTL := strings.Cut(strings.TrimSpace(spec), "/")
		size, err := strconv.Atoi(sizeText)
		if err != nil || size < 1 || size > maxHistorySize {
			return nil, &valueError{"history entry", item, historyWant}
		}
		r := historyRule{pattern: pattern, policy: broadcast.HistoryPolicy{Size: size}}
		if hasTTL {
			ttl, err := time.ParseDuration(ttlText)
			if err != nil || ttl < 0 {
				return nil, &valueError{"history entry", item, historyWant}
			}
			r.policy.TTL = ttl
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// historyPolicy returns the hub's Options.History for rules: the first
// rule whose pattern matches a topic gives its policy.
func historyPolicy(rules []historyRule) func(string) broadcast.HistoryPolicy {
	return func(topic string) broadcast.HistoryPolicy {
		for _, r := range rules {
			if p := r.pattern; p == topic || p == "*" || (strings.HasSuffix(p, "*") && strings.HasPrefix(topic, p[:len(p)-1])) {
				return r.policy
			}
		}
		return broadcast.HistoryPolicy{}
	}
}

// historyOptions sets the hub's history and envelope options from cfg.
func historyOptions(cfg *config, o *broadcast.Options) {
	if rules, _ := parseHistoryRules(cfg.History); len(rules) > 0 { // checked when read
		o.History = historyPolicy(rules)
	}
	o.Envelope = appendEnvelope
}

// appendEnvelope is the ?format=json envelope of a publication:
// {"topic":"news","offset":7,"epoch":"x","data":"text"}, with data_base64
// for a binary message, and no offset and epoch for a topic without
// history. It allocates nothing (it appends to dst).
func appendEnvelope(dst []byte, topic string, pos broadcast.Position, op codec.OpCode, payload []byte) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendJSONString(dst, topic)
	if pos.Epoch != "" {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, pos.Offset, 10)
		dst = append(dst, `,"epoch":`...)
		dst = appendJSONString(dst, pos.Epoch)
	}
	if op == codec.OpBinary {
		dst = append(dst, `,"data_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, payload)
		return append(dst, `"}`...)
	}
	dst = append(dst, `,"data":`...)
	dst = appendJSONString(dst, payload)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string (RFC 8259 §7): quotes,
// backslashes and control characters escaped, invalid UTF-8 replaced by
// U+FFFD.
func appendJSONString[T string | []byte](dst []byte, s T) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// pushResume is what a push client asked for on its URL: ?format=json and
// ?since=TOPIC:OFFSET:EPOCH entries.
type pushResume struct {
	envelope bool
	since    map[string]broadcast.Position
}

// parseResume reads ?format= and ?since= (comma-separated, repeatable)
// for upgrade. Every ?since= topic must be one of topics (the ?topics=
// list). nil, nil when the client asked for neither.
func parseResume(q url.Values, topics map[string]bool) (*pushResume, *engine.Response) {
	var pr pushResume
	switch f := q.Get("format"); f {
	case "", "raw":
	case "json":
		pr.envelope = true
	default:
		return nil, badRequest(fmt.Sprintf("unknown format %q: want raw (the default) or json", f))
	}
	for _, v := range q["since"] {
		for _, item := range splitList(v) {
			topic, pos, ok := parseSince(item)
			if !ok {
				return nil, badRequest(fmt.Sprintf("bad since %q: want TOPIC:OFFSET:EPOCH, the position of the last message seen", item))
			}
			if !topics[topic] {
				return nil, badRequest(fmt.Sprintf("since names topic %s, which is not in ?topics=", quoteTopic(topic)))
			}
			if pr.since == nil {
				pr.since = map[string]broadcast.Position{}
			}
			pr.since[topic] = pos
		}
	}
	if !pr.envelope && pr.since == nil {
		return nil, nil
	}
	return &pr, nil
}

// parseSince reads TOPIC:OFFSET:EPOCH; the topic may hold colons, an
// epoch does not.
func parseSince(s string) (string, broadcast.Position, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", broadcast.Position{}, false
	}
	j := strings.LastIndexByte(s[:i], ':')
	if j <= 0 || i == len(s)-1 {
		return "", broadcast.Position{}, false
	}
	off, err := strconv.ParseUint(s[j+1:i], 10, 64)
	if err != nil {
		return "", broadcast.Position{}, false
	}
	return s[:j], broadcast.Position{Offset: off, Epoch: s[i+1:]}, true
}

// openResume makes the ?topics= subscriptions of a client that asked for
// ?format=json or ?since=: each is answered with a subscribed ack, with
// the position and, for a ?since= topic, whether it recovered; the
// replays follow the acks. Loop only (OnOpen).
func (h *pushHandler) openResume(c *engine.Conn, topics []string, pr *pushResume) {
	if pr.envelope {
		h.hub.SetEnvelope(c, true)
	}
	for _, topic := range topics {
		var since *broadcast.Position
		if pos, ok := pr.since[topic]; ok {
			since = &pos
		}
		h.hub.SubscribeSinceAsync(c, topic, since, func(rec broadcast.Recovery, err error) {
			// An error means closing: upgrade checked the names and the count.
			if err == nil && (pr.envelope || since != nil) {
				pushSubscribed(c, topic, rec, since != nil)
			}
		})
	}
}

// pushSubscribed acknowledges a subscription: {"op":"subscribed",
// "topic":"news"}, with "offset" and "epoch" when the topic keeps history,
// and "recovered" when the client asked to resume.
func pushSubscribed(c *engine.Conn, topic string, rec broadcast.Recovery, resumed bool) {
	type ack struct {
		Op        string  `json:"op"`
		Topic     string  `json:"topic"`
		Recovered *bool   `json:"recovered,omitempty"`
		Offset    *uint64 `json:"offset,omitempty"`
		Epoch     string  `json:"epoch,omitempty"`
	}
	a := ack{Op: "subscribed", Topic: topic}
	if resumed {
		a.Recovered = &rec.Recovered
	}
	if rec.History {
		a.Offset, a.Epoch = &rec.Position.Offset, rec.Position.Epoch
	}
	b, _ := json.Marshal(a)
	_ = c.Write(codec.OpText, b)
}

// pushPublished acknowledges a client's publish: {"op":"published",
// "topic":"room.1"}, with the "offset" and "epoch" the message took when
// the topic keeps history (alone; in a cluster with JetStream history
// storedAcks answers it off the loop, with the stream's position).
func pushPublished(c *engine.Conn, topic string, pos []broadcast.TopicPosition) {
	_ = c.Write(codec.OpText, publishedAck(topic, pos))
}

// publishedAck is the JSON of pushPublished's ack.
func publishedAck(topic string, pos []broadcast.TopicPosition) []byte {
	type ack struct {
		Op     string  `json:"op"`
		Topic  string  `json:"topic"`
		Offset *uint64 `json:"offset,omitempty"`
		Epoch  string  `json:"epoch,omitempty"`
	}
	a := ack{Op: "published", Topic: topic}
	if len(pos) > 0 {
		a.Offset, a.Epoch = &pos[0].Offset, pos[0].Epoch
	}
	b, _ := json.Marshal(a)
	return b
}
