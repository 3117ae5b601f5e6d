package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
		ph := &pushHandler{hub: hub, allowed: splitList(cfg.ClientPublish)}
		return &mode{handler: hub.Handler(ph), onUpgrade: pushUpgrade}, nil
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

// pushUpgrade subscribes a connection to the topics in ?topics=a,b.
func pushUpgrade(r *engine.Request) *engine.Response {
	r.Context = splitList(r.Query("topics"))
	return nil
}

// pushHandler serves push clients: they subscribe with ?topics= and with
// JSON control messages, and receive what is published to their topics.
type pushHandler struct {
	engine.NopHandler
	hub     *broadcast.Hub
	allowed []string // topics clients may publish to ("*" for all, "news.*" for a prefix)
}

func (h *pushHandler) OnOpen(c *engine.Conn) {
	if topics, _ := c.Context().([]string); len(topics) > 0 {
		h.hub.Subscribe(c, topics...)
	}
	c.SetContext(nil)
}

// controlMessage is a push client's request.
type controlMessage struct {
	Op         string `json:"op"` // subscribe, unsubscribe, publish
	Topic      string `json:"topic"`
	Data       string `json:"data"`
	DataBase64 string `json:"data_base64"`
}

func (h *pushHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	var m controlMessage
	if op != codec.OpText || json.Unmarshal(p, &m) != nil {
		pushReply(c, "error", "", `control messages are JSON text: {"op":"subscribe","topic":"name"}`)
		return
	}
	if m.Topic == "" {
		pushReply(c, "error", "", "topic is required")
		return
	}
	switch m.Op {
	case "subscribe":
		h.hub.Subscribe(c, m.Topic)
		pushReply(c, "subscribed", m.Topic, "")
	case "unsubscribe":
		h.hub.Unsubscribe(c, m.Topic)
		pushReply(c, "unsubscribed", m.Topic, "")
	case "publish":
		if !topicAllowed(h.allowed, m.Topic) {
			pushReply(c, "error", m.Topic, "publishing to this topic is not allowed")
			return
		}
		if m.DataBase64 != "" {
			data, err := base64.StdEncoding.DecodeString(m.DataBase64)
			if err != nil {
				pushReply(c, "error", m.Topic, "data_base64 is not valid base64")
				return
			}
			h.hub.Publish(m.Topic, codec.OpBinary, data)
		} else {
			h.hub.Publish(m.Topic, codec.OpText, []byte(m.Data))
		}
		pushReply(c, "published", m.Topic, "")
	default:
		pushReply(c, "error", m.Topic, "unknown op "+m.Op)
	}
}

// pushReply answers a control message.
func pushReply(c *engine.Conn, op, topic, errText string) {
	b, _ := json.Marshal(struct {
		Op    string `json:"op"`
		Topic string `json:"topic,omitempty"`
		Error string `json:"error,omitempty"`
	}{op, topic, errText})
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
