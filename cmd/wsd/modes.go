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
}

func newMode(cfg *config, hub *broadcast.Hub) (*mode, error) {
	switch cfg.Mode {
	case "echo":
		return &mode{handler: echoHandler{}}, nil
	case "chat":
		ch := &chatHandler{hub: hub, skipSender: cfg.SkipSender}
		return &mode{handler: hub.Handler(ch), onUpgrade: chatUpgrade, httpHandler: serveDemo}, nil
	case "push":
		ph := &pushHandler{hub: hub, allowed: splitList(cfg.ClientPublish), maxSubs: cfg.MaxSubscriptions}
		return &mode{handler: hub.Handler(ph), onUpgrade: ph.upgrade}, nil
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
		return nil
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
	r.Context = &chatConn{room: room, presence: r.Query("presence") == "1"}
	return nil
}

// chatHandler relays every message to everyone in the sender's room, like
// the classic tornado and flask chat rooms.
type chatHandler struct {
	engine.NopHandler
	hub        *broadcast.Hub
	skipSender bool
}

func (h *chatHandler) OnOpen(c *engine.Conn) {
	cc := c.Context().(*chatConn)
	h.hub.Subscribe(c, cc.room)
	if cc.presence {
		h.hub.Subscribe(c, presenceTopic(cc.room))
	}
	h.announce(cc.room)
}

func (h *chatHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	m := broadcast.Message{Topics: []string{c.Context().(*chatConn).room}, Op: op, Payload: p}
	if h.skipSender {
		m.Exclude = c.ID()
	}
	h.hub.PublishMessage(m)
}

func (h *chatHandler) OnClose(c *engine.Conn, _ error) {
	h.announce(c.Context().(*chatConn).room)
}

// announce sends the room's online count to its presence subscribers.
func (h *chatHandler) announce(room string) {
	pt := presenceTopic(room)
	if h.hub.Count(pt) == 0 {
		return
	}
	msg, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Room   string `json:"room"`
		Online int    `json:"online"`
	}{"presence", room, h.hub.Count(room)})
	h.hub.Publish(pt, codec.OpText, msg)
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
	codeForbidden   pushErrorCode = "forbidden"              // publishing to a topic -client-publish does not allow
)

// pushHandler serves push clients: they subscribe with ?topics= and with
// JSON control messages, and receive what is published to their topics.
type pushHandler struct {
	engine.NopHandler
	hub     *broadcast.Hub
	allowed []string // topics clients may publish to ("*" for all, "news.*" for a prefix)
	maxSubs int      // topics one connection may be subscribed to; 0: no limit
}

// upgrade takes the topics of ?topics=a,b (the parameter may be repeated)
// for OnOpen to subscribe to. A query that is not valid URL encoding, a
// topic name checkTopic refuses, or more distinct topics than maxSubs, get
// 400 with the reason.
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
	r.Context = topics
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
	if topics, _ := c.Context().([]string); len(topics) > 0 {
		// upgrade checked the names and the count, so this fails only for
		// a connection that is already closing.
		_ = h.hub.Subscribe(c, topics...)
	}
	c.SetContext(nil)
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
		switch err := h.hub.Subscribe(c, m.Topic); {
		case errors.Is(err, broadcast.ErrTooManySubscriptions):
			pushError(c, codeTooManySubs, m.Topic, fmt.Sprintf("a connection may subscribe to at most %d topics", h.maxSubs))
		case err == nil:
			pushReply(c, "subscribed", m.Topic)
		}
	case "unsubscribe":
		h.hub.Unsubscribe(c, m.Topic)
		pushReply(c, "unsubscribed", m.Topic)
	case "publish":
		if !topicAllowed(h.allowed, m.Topic) {
			pushError(c, codeForbidden, m.Topic, "publishing to this topic is not allowed")
			return
		}
		if m.DataBase64 != "" {
			data, err := base64.StdEncoding.DecodeString(m.DataBase64)
			if err != nil {
				pushError(c, codeBadRequest, m.Topic, "data_base64 is not valid base64")
				return
			}
			h.hub.Publish(m.Topic, codec.OpBinary, data)
		} else {
			h.hub.Publish(m.Topic, codec.OpText, []byte(m.Data))
		}
		pushReply(c, "published", m.Topic)
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
