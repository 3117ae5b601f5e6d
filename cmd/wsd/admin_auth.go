package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/codec"
)

// The admin endpoints about users and connections (all behind the same
// bearer token as the rest of /api/):
//
//	POST /api/publish {"user":"alice","data":"..."}   every connection of alice on this node
//	POST /api/disconnect {"user":"alice"} or {"id":"42"}, with "code" and "reason"
//	GET  /api/presence/{topic}?limit=100             the subscribers: ids, users, info
//
// Users are known with -auth only; presence lists ids without it.

// Bounds of GET /api/presence.
const (
	defaultPresenceLimit = 100
	maxPresenceLimit     = 1000
)

// addAuthRoutes adds the endpoints above; g is nil with -auth off.
func (a *admin) addAuthRoutes(g *authn) {
	a.authn = g
	if g != nil {
		a.registry.MustRegister(authMetrics{g})
	}
	a.mux.HandleFunc("POST /api/disconnect", a.auth(a.disconnect))
	a.mux.HandleFunc("/api/disconnect", methodNotAllowed("POST"))
	a.mux.HandleFunc("GET /api/presence/{topic...}", a.auth(a.presence))
}

// publishUser answers a publish request with "user": the message goes to
// every connection of the user on this node.
func (a *admin) publishUser(w http.ResponseWriter, user string, op codec.OpCode, payload []byte) {
	if a.authn == nil {
		writeError(w, http.StatusConflict, `"user" needs -auth optional or required: without it connections have no user`)
		return
	}
	n := 0
	for _, c := range a.authn.reg.userConns(user) {
		if c.Send(op, payload) == nil {
			n++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "recipients": n})
}

// disconnectRequest is the body of POST /api/disconnect.
type disconnectRequest struct {
	User   string  `json:"user"`
	ID     connRef `json:"id"`
	Code   int     `json:"code"`
	Reason string  `json:"reason"`
}

func (a *admin) disconnect(w http.ResponseWriter, r *http.Request) {
	if a.authn == nil {
		writeError(w, http.StatusConflict, "disconnect needs -auth optional or required")
		return
	}
	var req disconnectRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid JSON body: more than one JSON value")
		return
	}
	code := codec.StatusCode(req.Code)
	switch {
	case (req.User == "") == (req.ID == ""):
		writeError(w, http.StatusBadRequest, `give "user" or "id" (a connection id), one of them`)
		return
	case req.Code == 0:
		code = closeDisconnected
	case req.Code != 1000 && !closeCodeOK(req.Code):
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"code" %d: want 1000, 1008, 1013 or 3000-4999`, req.Code))
		return
	case len(req.Reason) > 123:
		writeError(w, http.StatusBadRequest, `"reason" is at most 123 bytes (it goes in the close frame)`)
		return
	}
	var closed int
	if req.User != "" {
		for _, c := range a.authn.reg.userConns(req.User) {
			if c.Close(code, req.Reason) == nil {
				closed++
			}
		}
	} else {
		node, id, err := a.cluster.parseConnID(string(req.ID))
		switch {
		case err != nil:
			writeError(w, http.StatusBadRequest, `"id": `+err.Error())
			return
		case node != "" && (a.cluster == nil || node != a.cluster.b.Node()):
			writeError(w, http.StatusNotFound, "connection "+string(req.ID)+" is not on this node: ask its node")
			return
		}
		s := a.authn.reg.getID(id)
		if s == nil {
			writeError(w, http.StatusNotFound, "no connection "+string(req.ID)+" on this node")
			return
		}
		if s.c.Close(code, req.Reason) == nil {
			closed++
		}
	}
	for range closed {
		a.authn.counts.countClose(code)
	}
	a.authn.log.Info("disconnected through the API", zap.String("user", req.User), zap.String("id", string(req.ID)), zap.Int("code", int(code)), zap.Int("closed", closed))
	writeJSON(w, http.StatusOK, map[string]any{"closed": closed, "code": int(code)})
}

// presenceMember is one subscriber in GET /api/presence.
type presenceMember struct {
	ID   string          `json:"id"`
	User string          `json:"user,omitempty"`
	Info json.RawMessage `json:"info,omitempty"`
}

func (a *admin) presence(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	limit := defaultPresenceLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPresenceLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", s, maxPresenceLimit))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.wait)
	defer cancel()
	total, members, err := a.hub.Members(ctx, topic, limit)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, "presence: "+err.Error())
		return
	}
	list := make([]presenceMember, 0, len(members))
	for _, m := range members {
		pm := presenceMember{ID: a.cluster.connID(m.ID)}
		if a.authn != nil {
			if s := a.authn.reg.getID(m.ID); s != nil {
				if id := s.id.Load(); id != nil {
					pm.User, pm.Info = id.Sub, id.Info
				}
			}
		}
		list = append(list, pm)
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "total": total, "members": list, "truncated": total > len(list), "partial": err != nil})
}
