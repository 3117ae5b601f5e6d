package main

import (
	_ "embed"
	"net/http"
	"net/url"
	"strings"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/engine"
)

// The JavaScript client (web/wsd-client.js), served at /wsd-client.js by
// the chat and push modes, and resuming in chat rooms: a chat URL takes
// ?format=json and ?since=ROOM:OFFSET:EPOCH as a push URL does, the room
// being the topic ("/chat/lobby" is topic "chat/lobby"), so a room that
// -history names gives a client that comes back what was said meanwhile.

//go:embed web/wsd-client.js
var clientJS []byte

// serveClientJS answers GET /wsd-client.js.
func serveClientJS(r *engine.Request) *engine.Response {
	if r.Path() != "/wsd-client.js" {
		return nil
	}
	return &engine.Response{
		Header: http.Header{"Content-Type": {"text/javascript; charset=utf-8"}, "Cache-Control": {"no-cache"}},
		Body:   clientJS,
	}
}

// chatResume reads ?format= and ?since= of a chat upgrade for room.
func chatResume(r *engine.Request, room string) (*pushResume, *engine.Response) {
	_, query, _ := strings.Cut(r.URI(), "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, badRequest("the query is not valid URL encoding: " + err.Error())
	}
	return parseResume(q, map[string]bool{room: true})
}

// openResume subscribes a chat connection that asked for ?format=json or
// ?since= to its room, and acknowledges it as a push subscription
// ({"op":"subscribed","topic":"chat/lobby",...}). Loop only (OnOpen).
func (h *chatHandler) openResume(c *engine.Conn, cc *chatConn) {
	pr := cc.resume
	if pr.envelope {
		h.hub.SetEnvelope(c, true)
		if cc.presence && h.presence != nil {
			h.presence.SetEnvelope(c, true)
		}
	}
	var since *broadcast.Position
	if pos, ok := pr.since[cc.room]; ok {
		since = &pos
	}
	h.hub.SubscribeSinceAsync(c, cc.room, since, func(rec broadcast.Recovery, err error) {
		if err == nil {
			pushSubscribed(c, cc.room, rec, since != nil)
		}
	})
}
