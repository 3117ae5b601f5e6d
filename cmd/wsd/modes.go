package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	_ "embed"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

//go:embed web/index.html
var demoPage []byte

// mode is what the daemon serves: its handler and the engine hooks it needs.
type mode struct {
	handler     engine.Handler
	onUpgrade   func(*engine.Request) *engine.Response
	httpHandler func(*engine.Request) *engine.Response
	chat        *chatHandler // chat mode: its presence, for a cluster
	auth        *authn       // -auth: the clients' identities (auth.go); nil when off
}

// newMode builds the mode of a node alone.
func newMode(cfg *config, hub *broadcast.Hub) (*mode, error) { return newModeIn(cfg, hub, nil) }

// newModeIn builds the mode of a node of cl (nil: alone).
func newModeIn(cfg *config, hub *broadcast.Hub, cl *cluster) (*mode, error) {
	md, err := newModeOf(cfg, hub, cl, newAuthn(cfg, cl.connID))
	if err != nil {
		return nil, err
	}
	return md.auth.wrap(md), nil
}

// newModeOf builds the mode, its push permissions guarded by g (nil: -auth off).
func newModeOf(cfg *config, hub *broadcast.Hub, cl *cluster, g *authn) (*mode, error) {
	switch cfg.Mode {
	case "echo":
		return &mode{handler: echoHandler{}}, nil
	case "chat":
		ch := &chatHandler{hub: hub, skipSender: cfg.SkipSender, perm: g.guard()}
		handler := hub.Handler(ch)
		if cl != nil {
			ch.presence, ch.changed = broadcast.New(hubOptions(cfg)), cl.presenceChanged
			handler = hub.Handler(ch.presence.Handler(ch))
		}
		return &mode{handler: handler, onUpgrade: chatUpgrade, httpHandler: serveDemo, chat: ch, auth: g}, nil
	case "push":
		ph := &pushHandler{hub: hub, allowed: splitList(cfg.ClientPublish), maxSubs: cfg.MaxSubscriptions, connID: cl.connID, perm: g.guard()}
		if cl != nil {
			ph.unavailable, ph.stored = cl.unavailable, newStoredAcks(cfg, hub)
		}
		return &mode{handler: hub.Handler(ph), onUpgrade: ph.upgrade, httpHandler: serveClientJS, auth: g}, nil
	}
	return nil, fmt.Errorf("unknown mode %q (want echo, chat or push)", cfg.Mode)
}

// echoHandler sends every message back to its sender with its opcode.
type echoHandler struct{ engine.NopHandler }

func (echoHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	_ = c.Write(op, p)
}

// serveDemo answers GET / with the browser chat page.
func serveDemo(r *engine.Request) *engine.Response {
	if r.Path() != "/" && r.Path() != "/index.html" {
		return serveClientJS(r) // /wsd-client.js (history_chat.go)
	}
	return &engine.Response{
		Header: http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Cache-Control": {"no-cache"}},
		Body:   demoPage,
	}
}

// chatConn is what a chat connection remembers: its room and whether it
// wants presence events.
type chatConn struct {
	room     string
	presence bool
	resume   *pushResume // ?format=json, ?since= (history_chat.go); nil: neither
}

// presencePrefix starts the hub topic of a room's presence events. A room
// is a request path, which never holds a space (the space ends the target
// in the request line, and chatUpgrade refuses rooms with spaces or control
// bytes anyway), so no client can join or publish to a presence topic by
// naming it as its room.
const presencePrefix = "presence "

// presenceTopic is the hub topic on which a room's presence events go.
func presenceTopic(room string) string { return presencePrefix + room }

// chatUpgrade takes the room from the path ("/chat/lobby" is room
// "chat/lobby"; "/" is room "lobby"). A path with a space or a control byte
// is refused with 400.
func chatUpgrade(r *engine.Request) *engine.Response {
	room := strings.TrimPrefix(r.Path(), "/")
	if room == "" {
		room = "lobby"
	}
	if strings.ContainsFunc(room, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return &engine.Response{Status: http.StatusBadRequest, Body: []byte("a room name holds no spaces or control characters\n")}
	}
	resume, bad := chatResume(r, room)
	if bad != nil {
		return bad
	}
	r.Context = &chatConn{room: room, presence: r.Query("presence") == "1", resume: resume}
	return nil
}

// chatHandler relays every message to everyone in the sender's room, like
// the classic tornado and flask chat rooms.
type chatHandler struct {
	engine.NopHandler
	hub        *broadcast.Hub
	skipSender bool

	// In a cluster a presence event has the count of the whole cluster:
	// changed tells the broker that this node's counts changed, the broker
	// adds up every node's and calls announce with a room's new total, and
	// each node tells its own presence subscribers, through presence, a hub
	// of this node alone (a publish on hub would reach every node, and
	// each node tells its subscribers itself). Alone, both are nil and the
	// presence topics are on hub.
	presence *broadcast.Hub
	changed  func()
	perm     topicGuard // -auth: who may talk in a room (auth.go); nil when off
}

func (h *chatHandler) OnOpen(c *engine.Conn) {
	cc := c.Context().(*chatConn)
	if cc.resume != nil {
		h.openResume(c, cc)
	} else {
		h.hub.Subscribe(c, cc.room)
	}
	if cc.presence {
		h.presenceHub().Subscribe(c, presenceTopic(cc.room))
	}
	h.roomChanged(cc.room)
}

func (h *chatHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	room := c.Context().(*chatConn).room
	if !h.mayTalk(c, room) {
		pushError(c, codeForbidden, room, "talking in this room is not allowed: this user may only read it")
		return
	}
	m := broadcast.Message{Topics: []string{room}, Op: op, Payload: p}
	if h.skipSender {
		m.Exclude = c.ID()
	}
	h.hub.PublishMessage(m)
}

func (h *chatHandler) OnClose(c *engine.Conn, _ error) {
	h.roomChanged(c.Context().(*chatConn).room)
}

// presenceHub is the hub of the presence topics.
func (h *chatHandler) presenceHub() *broadcast.Hub {
	if h.presence != nil {
		return h.presence
	}
	return h.hub
}

// roomChanged follows a join or a leave: alone, it announces the room's
// count; in a cluster, the broker announces the cluster's soon.
func (h *chatHandler) roomChanged(room string) {
	if h.changed != nil {
		h.changed()
		return
	}
	h.announce(room, h.hub.Count(room))
}

// announce sends a room's online count to its presence subscribers.
func (h *chatHandler) announce(room string, online int) {
	pt := presenceTopic(room)
	ph := h.presenceHub()
	if ph.Count(pt) == 0 {
		return
	}
	msg, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Room   string `json:"room"`
		Online int    `json:"online"`
	}{"presence", room, online})
	ph.Publish(pt, codec.OpText, msg)
}

// maxTopicLen is the longest topic name of the push mode, in bytes.
const maxTopicLen = 256

// checkTopic returns why name cannot be a push topic, or "" if it can. A
// topic is 1 to maxTopicLen bytes of printable UTF-8 with no space and no
// comma: it can then be written in every place that names topics (a
// ?topics= list and -client-publish are comma-separated), and it shows in
// logs and acks as it is, without invisible or look-alike characters.
func checkTopic(name string) string {
	switch {
	case name == "":
		return "topic is required"
	case len(name) > maxTopicLen:
		return fmt.Sprintf("a topic name is at most %d bytes, this one %d", maxTopicLen, len(name))
	case !utf8.ValidString(name):
		return "a topic name is UTF-8 text"
	case strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' || r == ',' }):
		return "a topic name holds printable characters only, no spaces and no commas"
	}
	return ""
}

// pushErrorCode is the "code" of a push error ack.
type pushErrorCode string

const (
	codeBadRequest  pushErrorCode = "bad_request"            // not a JSON text message, an unknown op, bad data_base64
	codeBadTopic    pushErrorCode = "bad_topic"              // the topic is missing or breaks checkTopic's rule
	codeTooManySubs pushErrorCode = "too_many_subscriptions" // past -max-subscriptions
	codeForbidden   pushErrorCode = "forbidden"              // publishing to a topic -client-publish does not allow (with -auth: subscribing or publishing where the identity may not)
	codeUnavailable pushErrorCode = "unavailable"            // publishing while the cluster's NATS is unreachable
)

// pushHandler serves push clients: they subscribe with ?topics= and with
// JSON control messages, and receive what is published to their topics.
type pushHandler struct {
	engine.NopHandler
	hub     *broadcast.Hub
	allowed []string            // topics clients may publish to ("*" for all, "news.*" for a prefix)
	maxSubs int                 // topics one connection may be subscribed to; 0: no limit
	connID  func(uint64) string // a connection's id for the welcome message and the publish API
	// unavailable, in a cluster, reports that NATS is unreachable, so that
	// a client's publish is refused rather than lost. nil: alone.
	unavailable func() bool
	perm        topicGuard  // -auth: what each client may subscribe and publish to (auth.go); nil when off
	stored      *storedAcks // in a cluster with -history: publishes to those topics, acked off the loop (history_publish.go); nil otherwise
}

// pushOpen is what upgrade leaves for OnOpen.
type pushOpen struct {
	topics  []string
	welcome bool
	resume  *pushResume // ?format=json, ?since= (history.go); nil: neither
}

// upgrade takes the topics of ?topics=a,b (the parameter may be repeated)
// for OnOpen to subscribe to, and ?welcome=1, which asks for the welcome
// message. A query that is not valid URL encoding, a topic name checkTopic
// refuses, or more distinct topics than maxSubs, get 400 with the reason.
func (h *pushHandler) upgrade(r *engine.Request) *engine.Response {
	_, query, _ := strings.Cut(r.URI(), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return badRequest("the query is not valid URL encoding: " + err.Error())
	}
	var topics []string
	seen := map[string]bool{}
	for _, v := range q["topics"] {
		for _, name := range splitList(v) {
			if why := checkTopic(name); why != "" {
				return badRequest(fmt.Sprintf("bad topic %s: %s", quoteTopic(name), why))
			}
			if !seen[name] {
				seen[name] = true
				topics = append(topics, name)
			}
		}
	}
	if h.maxSubs > 0 && len(topics) > h.maxSubs {
		return badRequest(fmt.Sprintf("%d topics; a connection may subscribe to at most %d", len(topics), h.maxSubs))
	}
	resume, bad := parseResume(q, seen)
	if bad != nil {
		return bad
	}
	if welcome := q.Get("welcome") == "1"; welcome || len(topics) > 0 || resume != nil {
		r.Context = &pushOpen{topics: topics, welcome: welcome, resume: resume}
	}
	return nil
}

// badRequest is an upgrade refused with 400 and a line of text.
func badRequest(msg string) *engine.Response {
	return &engine.Response{Status: http.StatusBadRequest, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte(msg + "\n")}
}

// quoteTopic quotes a topic name for a message, or names its length if it
// is too long to repeat.
func quoteTopic(name string) string {
	if len(name) > maxTopicLen {
		return fmt.Sprintf("of %d bytes", len(name))
	}
	return strconv.Quote(name)
}

func (h *pushHandler) OnOpen(c *engine.Conn) {
	po, _ := c.Context().(*pushOpen)
	c.SetContext(nil)
	if po == nil {
		return
	}
	if po.resume != nil {
		h.openResume(c, po.topics, po.resume)
	} else if len(po.topics) > 0 {
		// upgrade checked the names and the count, so this fails only for
		// a connection that is already closing.
		_ = h.hub.Subscribe(c, po.topics...)
	}
	if po.welcome {
		// {"op":"welcome","id":"node.42"}, the id that "to" and "exclude"
		// of the publish API take. It comes first, before any publish
		// (publishes reach a connection after its OnOpen), and once the
		// ?topics= subscriptions are made on this node.
		b, _ := json.Marshal(struct {
			Op string `json:"op"`
			ID string `json:"id"`
		}{"welcome", h.connID(c.ID())})
		_ = c.Write(codec.OpText, b)
	}
}

// maxOpEcho is the longest unknown op an error ack repeats: an ack must not
// cost more than the request.
const maxOpEcho = 32

// controlMessage is a push client's request.
type controlMessage struct {
	Op         string `json:"op"` // subscribe, unsubscribe, publish
	Topic      string `json:"topic"`
	Data       string `json:"data"`
	DataBase64 string `json:"data_base64"`
	// Since, on subscribe, resumes from this position (history.go).
	Since *broadcast.Position `json:"since"`
}

// OnMessage answers each control message with an ack, {"op":"subscribed",
// "topic":"a"} and the like, or an error ack (see pushError). Either way the
// connection stays open.
func (h *pushHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	var m controlMessage
	if op != codec.OpText || json.Unmarshal(p, &m) != nil {
		pushError(c, codeBadRequest, "", `control messages are JSON text: {"op":"subscribe","topic":"name"}`)
		return
	}
	switch m.Op {
	case "subscribe", "unsubscribe", "publish":
	default:
		what := "unknown op"
		if len(m.Op) <= maxOpEcho {
			what = fmt.Sprintf("unknown op %q", m.Op)
		}
		pushError(c, codeBadRequest, m.Topic, what+": want subscribe, unsubscribe or publish")
		return
	}
	if why := checkTopic(m.Topic); why != "" {
		pushError(c, codeBadTopic, m.Topic, why)
		return
	}
	switch m.Op {
	case "subscribe":
		if !h.maySubscribe(c, m.Topic) {
			pushError(c, codeForbidden, m.Topic, "subscribing to this topic is not allowed")
			return
		}
		// Async: in a cluster with history on JetStream, a resume this
		// node's cache cannot serve reads the stream first (history.go).
		h.hub.SubscribeSinceAsync(c, m.Topic, m.Since, func(rec broadcast.Recovery, err error) {
			switch {
			case errors.Is(err, broadcast.ErrTooManySubscriptions):
				pushError(c, codeTooManySubs, m.Topic, fmt.Sprintf("a connection may subscribe to at most %d topics", h.maxSubs))
			case err == nil:
				pushSubscribed(c, m.Topic, rec, m.Since != nil)
			}
		})
	case "unsubscribe":
		h.hub.Unsubscribe(c, m.Topic)
		pushReply(c, "unsubscribed", m.Topic)
	case "publish":
		if !h.mayPublish(c, m.Topic) {
			pushError(c, codeForbidden, m.Topic, "publishing to this topic is not allowed")
			return
		}
		if h.unavailable != nil && h.unavailable() {
			pushError(c, codeUnavailable, m.Topic, "the cluster's NATS is unreachable: nothing was sent; try again later")
			return
		}
		msg := broadcast.Message{Topics: []string{m.Topic}, Op: codec.OpText, Payload: []byte(m.Data)}
		if m.DataBase64 != "" {
			data, err := base64.StdEncoding.DecodeString(m.DataBase64)
			if err != nil {
				pushError(c, codeBadRequest, m.Topic, "data_base64 is not valid base64")
				return
			}
			msg.Op, msg.Payload = codec.OpBinary, data
		}
		if h.stored.publish(c, m.Topic, msg) { // cluster, topic with history: acked off the loop (history_publish.go)
			return
		}
		_, pos := h.hub.PublishPositions(msg)
		pushPublished(c, m.Topic, pos)
	}
}

// pushReply acknowledges a control message.
func pushReply(c *engine.Conn, op, topic string) {
	b, _ := json.Marshal(struct {
		Op    string `json:"op"`
		Topic string `json:"topic"`
	}{op, topic})
	_ = c.Write(codec.OpText, b)
}

// pushError answers a control message that was refused:
// {"op":"error","code":"bad_topic","message":"...","topic":"a b"}. The
// topic is left out when the request had none, or one too long to repeat.
func pushError(c *engine.Conn, code pushErrorCode, topic, msg string) {
	if len(topic) > maxTopicLen {
		topic = ""
	}
	b, _ := json.Marshal(struct {
		Op      string        `json:"op"`
		Code    pushErrorCode `json:"code"`
		Message string        `json:"message"`
		Topic   string        `json:"topic,omitempty"`
	}{"error", code, msg, topic})
	_ = c.Write(codec.OpText, b)
}

// topicAllowed matches topic against exact names, "*" and "prefix*" patterns.
func topicAllowed(patterns []string, topic string) bool {
	for _, p := range patterns {
		if p == topic || p == "*" || (strings.HasSuffix(p, "*") && strings.HasPrefix(topic, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}
