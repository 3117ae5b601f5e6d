package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/auth"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// Client authentication (-auth). The mode's handler and upgrade hook are
// wrapped by an authn: at the upgrade it reads the credentials (an
// Authorization header, Bearer or Basic, or ?token=), checks them (an HMAC
// token or a cached basic-auth success on the event loop; a signature or a
// bcrypt hash on an auth.Pool, the upgrade deferred meanwhile with
// engine.Request.Defer) and answers 401 with the reason, or 403 for topics
// in the URL the client may not subscribe to. A client without credentials
// is anonymous (-auth optional) or must send {"op":"auth","token":...} as
// its first message within -auth-timeout (-auth required): until then the
// mode does not see the connection (no OnOpen: no subscription, no room).
// What a client sends while the token of its auth or refresh message is
// checked off the loop is held (bounded) and handled in order after the
// answer, under the identity the answer gives.
// While connected a token's "exp" is enforced: {"op":"expired"}, then
// -auth-refresh-grace to send {"op":"refresh","token":...}, else close
// 4003; a deadline that comes while a token is checked waits for the
// answer, which closes the connection or sets the new token's. The
// deadlines are the connections' engine timers (Conn.SetTimer), in the
// event loops' timing wheels: no timer or goroutine of their own.

// Close codes of authentication (README: Authentication).
const (
	closeAuthBadMessage codec.StatusCode = 4000 // a first message that is not {"op":"auth",...}, or a malformed auth or refresh message
	closeAuthFailed     codec.StatusCode = 4001 // the token of an auth or refresh message is refused (the reason says why)
	closeAuthTimeout    codec.StatusCode = 4002 // no auth message within -auth-timeout
	closeAuthExpired    codec.StatusCode = 4003 // the token expired and no refresh came within -auth-refresh-grace
	closeAuthForbidden  codec.StatusCode = 4004 // the user may not subscribe to a topic (room) the URL names
	closeDisconnected   codec.StatusCode = 4005 // POST /api/disconnect without a code
)

// authn authenticates the clients of one daemon and knows each
// connection's identity.
type authn struct {
	cfg    *authConfig
	pool   *auth.Pool // slow checks; nil when every check is cheap
	connID func(uint64) string
	reg    registry
	onLoop bool // HMAC tokens: checked on the event loop
	// log gets, at debug level, each authentication and refusal with the
	// connection id and user (never a credential). newDaemon sets it.
	log *zap.Logger
	// counts are exported on /metrics (auth_metrics.go).
	counts authCounts
	// The messages held while an auth or refresh message's token is checked
	// off the loop: at most holdCount, of holdBytes together.
	holdCount, holdBytes int
	// refusedLog and closedLog let the refusals' and closes' log lines
	// through at most once a second each: a client can cause them at will.
	refusedLog, closedLog logLimiter
}

// maxHeld is how many messages a connection may send after an auth or
// refresh message and before its answer, while the token is checked off
// the loop.
const maxHeld = 16

// logLimiter lets one log line of a kind through per second and counts
// the others, like the engine's limit logs.
type logLimiter struct {
	last       atomic.Int64 // unix ns of the last line let through
	suppressed atomic.Int64 // lines held back since
}

// allow reports whether a line may be written now, and how many were held
// back since the last one. Any goroutine.
func (l *logLimiter) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

// newAuthn returns the authentication of cfg, or nil with -auth off.
func newAuthn(cfg *config, connID func(uint64) string) *authn {
	a := &cfg.Auth
	if !a.on() {
		return nil
	}
	g := &authn{cfg: a, connID: connID, onLoop: a.jwt == nil || a.jwtOnLoop, log: zap.NewNop(), holdCount: maxHeld, holdBytes: int(cfg.MaxMessageSize)}
	if cfg.MaxMessageSize <= 0 || cfg.MaxMessageSize > 16<<20 {
		g.holdBytes = 16 << 20 // -max-message-size 0 (no limit), or more than the default
	}
	g.reg.init()
	if !g.onLoop || a.basic != nil {
		g.pool = auth.NewPool(auth.PoolOptions{Workers: a.CheckWorkers})
	}
	return g
}

// close stops the check pool: the checks still queued are answered
// ErrClosed, and close returns once the running ones are done. After the
// engine has shut down. Safe on a nil authn.
func (g *authn) close() {
	if g != nil && g.pool != nil {
		g.pool.Close()
	}
}

// wrap puts the authentication around md's handler and upgrade hook.
func (g *authn) wrap(md *mode) *mode {
	if g == nil {
		return md
	}
	md.handler = &authHandler{g: g, next: md.handler}
	md.onUpgrade = g.upgrade(md.onUpgrade)
	md.auth = g
	return md
}

// authCtx is the Context of an upgraded connection until its OnOpen: the
// identity (nil: it must send the auth message) and the mode's Context.
type authCtx struct {
	id   *auth.Identity
	next any
}

// topicsOf returns the topics a mode's upgrade Context asks for: ?topics=
// in push mode, the room in chat mode.
func topicsOf(modeCtx any) []string {
	switch v := modeCtx.(type) {
	case *pushOpen:
		return v.topics
	case *chatConn:
		return []string{v.room}
	}
	return nil
}

// forbiddenTopic returns the first of topics id may not subscribe to.
func forbiddenTopic(id *auth.Identity, topics []string) (string, bool) {
	for _, t := range topics {
		if !id.CanSubscribe(t) {
			return t, true
		}
	}
	return "", false
}

// upgrade wraps the mode's upgrade hook next.
func (g *authn) upgrade(next func(*engine.Request) *engine.Response) func(*engine.Request) *engine.Response {
	return func(r *engine.Request) *engine.Response {
		if next != nil {
			if resp := next(r); resp != nil {
				return resp
			}
		}
		modeCtx, remote := r.Context, r.RemoteAddr()
		header := r.Header("Authorization")
		token, bearer := auth.Bearer(header)
		basic := len(header) > 6 && strings.EqualFold(header[:6], "basic ")
		if !bearer && !basic {
			token = r.Query("token")
		}
		var check func() (*auth.Identity, error)
		switch {
		case basic && g.cfg.basic == nil, token != "" && g.cfg.jwt == nil:
			return g.refused(remote, auth.ErrNoCredentials, "this server does not take these credentials")
		case basic:
			if id, ok := g.cfg.basic.Cached(header); ok {
				return g.accepted(r, modeCtx, id)
			}
			check = func() (*auth.Identity, error) { return g.cfg.basic.CheckBasic(header) }
		case token != "":
			if g.onLoop {
				id, err := g.cfg.jwt.Verify(token, time.Now())
				if err != nil {
					return g.refused(remote, err, "")
				}
				return g.accepted(r, modeCtx, id)
			}
			check = func() (*auth.Identity, error) { return g.cfg.jwt.Verify(token, time.Now()) }
		case g.cfg.Mode == "optional":
			return g.accepted(r, modeCtx, g.cfg.anonymous)
		default: // required, and the credentials come in the first message
			r.Context = &authCtx{next: modeCtx}
			return nil
		}
		p := r.Defer()
		err := g.pool.Submit(func() (*auth.Identity, error) {
			if p.Gone() {
				return nil, auth.ErrClosed
			}
			return check()
		}, func(id *auth.Identity, err error) {
			if err != nil {
				p.Reject(g.refused(remote, err, ""))
				return
			}
			if t, bad := forbiddenTopic(id, topicsOf(modeCtx)); bad {
				p.Reject(g.forbidden(t))
				return
			}
			p.Accept(&authCtx{id: id, next: modeCtx})
		})
		if err != nil {
			p.Reject(g.refused(remote, err, ""))
		}
		return nil
	}
}

// accepted completes an upgrade whose identity is known now.
func (g *authn) accepted(r *engine.Request, modeCtx any, id *auth.Identity) *engine.Response {
	if t, bad := forbiddenTopic(id, topicsOf(modeCtx)); bad {
		return g.forbidden(t)
	}
	r.Context = &authCtx{id: id, next: modeCtx}
	return nil
}

// refused is the 401 (or 503, 500) of a refused credential: the reason, never
// the credential. It is logged with the client's address (remote), at most
// once a second. Any goroutine.
func (g *authn) refused(remote net.Addr, err error, reason string) *engine.Response {
	if reason == "" {
		if ae, ok := err.(*auth.Error); ok {
			reason = ae.Reason
		} else {
			reason = "authentication failed"
		}
	}
	h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
	status := auth.Status(err)
	if ce := g.log.Check(zap.DebugLevel, "upgrade refused"); ce != nil {
		if ok, suppressed := g.refusedLog.allow(); ok {
			addr := ""
			if remote != nil {
				addr = remote.String()
			}
			ce.Write(zap.String("remote", addr), zap.Int("status", status), zap.String("reason", reason), zap.Int64("suppressed_since_last_log", suppressed))
		}
	}
	g.counts.countRefusal(status)
	if status == http.StatusUnauthorized {
		var ch []string
		if g.cfg.jwt != nil {
			ch = append(ch, `Bearer realm="wsd"`)
		}
		if g.cfg.basic != nil {
			ch = append(ch, `Basic realm="wsd", charset="UTF-8"`)
		}
		h["Www-Authenticate"] = ch
	}
	return &engine.Response{Status: status, Header: h, Body: []byte(reason + "\n")}
}

// forbidden is the 403 of a topic in the URL the user may not subscribe to.
func (g *authn) forbidden(topic string) *engine.Response {
	g.counts.countRefusal(http.StatusForbidden)
	return &engine.Response{Status: http.StatusForbidden, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body: []byte("not allowed to subscribe to " + quoteTopic(topic) + "\n")}
}

// session is what the daemon knows of an authenticated (or authenticating)
// connection.
type session struct {
	c  *engine.Conn
	id atomic.Pointer[auth.Identity] // nil until the auth message is accepted; read by the admin API

	// Loop only.
	opened    bool   // the mode's OnOpen ran
	checking  bool   // an auth or refresh token is being checked off the loop: the messages after it wait in held
	passing   bool   // while checking a refresh: held overflowed, so messages are handled at once, under the current token
	check     uint32 // counts the checks sent off the loop: the answer to an earlier one is stale
	held      []heldMessage
	heldBytes int
	expired   int64 // when {"op":"expired"} was sent (unix ns); 0: not sent for this token
	authBy    int64 // -auth required without credentials: the auth message's deadline (unix ns)
}

// authHandler is the mode's handler behind the authentication.
type authHandler struct {
	g    *authn
	next engine.Handler
}

func (h *authHandler) OnOpen(c *engine.Conn) {
	g := h.g
	ac, _ := c.Context().(*authCtx)
	s := &session{c: c}
	if ac != nil {
		c.SetContext(ac.next)
	}
	g.reg.add(s)
	if ac == nil || ac.id == nil {
		s.authBy = time.Now().Add(g.cfg.Timeout).UnixNano()
		c.SetTimer(time.Unix(0, s.authBy))
		return
	}
	h.start(s, ac.id)
}

// start opens the connection to the mode with identity id. Loop only.
func (h *authHandler) start(s *session, id *auth.Identity) {
	g, c := h.g, s.c
	if t, bad := forbiddenTopic(id, topicsOf(c.Context())); bad {
		g.closeConn(c, closeAuthForbidden, "not allowed to subscribe to "+quoteTopic(t))
		return
	}
	g.setIdentity(s, id)
	g.counts.authenticated.Add(1)
	s.opened = true
	if ce := g.log.Check(zap.DebugLevel, "authenticated"); ce != nil {
		ce.Write(zap.Uint64("id", c.ID()), zap.String("user", id.Sub))
	}
	h.next.OnOpen(c)
}

// setIdentity gives s the identity id: the user index, and the expiry
// deadline. Loop only.
func (g *authn) setIdentity(s *session, id *auth.Identity) {
	old := s.id.Swap(id)
	if old == nil || old.Sub != id.Sub {
		g.reg.setUser(s, old, id)
	}
	s.expired = 0
	if id.Expires.IsZero() {
		s.c.SetTimer(time.Time{})
	} else {
		s.c.SetTimer(id.Expires)
	}
}

func (h *authHandler) OnClose(c *engine.Conn, err error) {
	g := h.g
	s := g.reg.get(c)
	if s == nil {
		return
	}
	s.held = nil
	g.reg.remove(s)
	if s.opened {
		h.next.OnClose(c, err)
	}
}

// authMessage is an auth, refresh or whoami message.
type authMessage struct {
	Op    string `json:"op"`
	Token string `json:"token"`
}

func (h *authHandler) OnMessage(c *engine.Conn, op codec.OpCode, p []byte) {
	g := h.g
	s := g.reg.get(c)
	if s == nil {
		return
	}
	if s.checking && !s.passing {
		h.hold(s, op, p)
		return
	}
	if !s.opened {
		h.first(s, op, p)
		return
	}
	// A cheap look first: only a message that may be an auth op is parsed
	// here (whatever its size: a token too long is refused by the check,
	// with its reason); the mode parses the others as it always did.
	if op == codec.OpText && bytes.Contains(p, []byte(`"op"`)) &&
		(bytes.Contains(p, []byte(`"refresh"`)) || bytes.Contains(p, []byte(`"auth"`)) || bytes.Contains(p, []byte(`"whoami"`))) {
		var m authMessage
		if json.Unmarshal(p, &m) == nil {
			switch m.Op {
			case "refresh", "auth":
				h.verify(s, m.Token, m.Op == "refresh")
				return
			case "whoami":
				h.whoami(s)
				return
			}
		}
	}
	h.next.OnMessage(c, op, p)
}

// first handles a message of a connection that has not authenticated yet:
// it must be {"op":"auth","token":...}. Loop only.
func (h *authHandler) first(s *session, op codec.OpCode, p []byte) {
	c := s.c
	var m authMessage
	if op != codec.OpText || json.Unmarshal(p, &m) != nil || m.Op != "auth" {
		h.g.closeConn(c, closeAuthBadMessage, `authentication required: the first message is {"op":"auth","token":"..."}`)
		return
	}
	h.verify(s, m.Token, false)
}

// verify checks the token of an auth or refresh message, on the loop or
// on the pool. Loop only.
func (h *authHandler) verify(s *session, token string, refresh bool) {
	g := h.g
	if g.cfg.jwt == nil {
		g.closeConn(s.c, closeAuthFailed, "this server takes no tokens")
		return
	}
	if token == "" {
		g.closeConn(s.c, closeAuthBadMessage, `"token" is required`)
		return
	}
	if g.onLoop {
		id, err := g.cfg.jwt.Verify(token, time.Now())
		h.verified(s, id, err, refresh)
		return
	}
	// While passing, this refresh takes the place of the one being checked,
	// whose answer will be stale: the messages after it are held for it.
	s.checking, s.passing = true, false
	s.check++
	res := &authResult{h: h, s: s, refresh: refresh, check: s.check}
	err := g.pool.Submit(func() (*auth.Identity, error) {
		return g.cfg.jwt.Verify(token, time.Now())
	}, func(id *auth.Identity, err error) {
		res.id, res.err = id, err
		s.c.Loop().Post(res)
	})
	if err != nil {
		s.checking = false
		h.verified(s, nil, err, refresh)
	}
}

// heldMessage is a message that came while an auth or refresh message's
// token was checked off the loop.
type heldMessage struct {
	op codec.OpCode
	p  []byte
}

// hold keeps a copy of a message that came while an auth or refresh
// message's token is checked off the loop, to be handled once the check
// succeeds (replay), under the identity it gives; a refusal closes the
// connection, and the held messages are dropped. Past holdCount messages
// or holdBytes bytes, a connection still to authenticate is closed with
// 4000; one that refreshes, and holds a token that was good until now, is
// not: the held messages, this one and those after it until the answer
// are handled at once, in order, under that token (passing), as a client
// that streams publishes while it refreshes expects. Loop only.
func (h *authHandler) hold(s *session, op codec.OpCode, p []byte) {
	g := h.g
	if len(s.held) >= g.holdCount || s.heldBytes+len(p) > g.holdBytes {
		if !s.opened {
			g.closeConn(s.c, closeAuthBadMessage, "too much sent before the answer to the auth message")
			return
		}
		s.passing = true
		h.replay(s)
		if s.c.IsOpen() {
			h.OnMessage(s.c, op, p)
		}
		return
	}
	s.held = append(s.held, heldMessage{op, append([]byte(nil), p...)})
	s.heldBytes += len(p)
}

// replay handles the held messages, in order, once an auth or refresh
// message is answered. One of them may be another auth or refresh message
// whose check runs off the loop: the ones after it are held again, behind
// it. Loop only.
func (h *authHandler) replay(s *session) {
	held := s.held
	s.held, s.heldBytes = nil, 0
	for _, m := range held {
		if !s.c.IsOpen() {
			return
		}
		h.OnMessage(s.c, m.op, m.p)
	}
}

// authResult brings the result of a check made off the loop back to it.
type authResult struct {
	h       *authHandler
	s       *session
	refresh bool
	check   uint32 // session.check when it was sent
	id      *auth.Identity
	err     error
}

func (r *authResult) Run(*engine.Loop) {
	s := r.s
	if r.check != s.check {
		return // a later refresh took its place (see verify)
	}
	s.checking, s.passing = false, false
	if !s.c.IsOpen() {
		return
	}
	r.h.verified(s, r.id, r.err, r.refresh)
	if len(s.held) > 0 && s.c.IsOpen() {
		r.h.replay(s)
	}
}

// verified applies the result of an auth or refresh message. Loop only.
func (h *authHandler) verified(s *session, id *auth.Identity, err error, refresh bool) {
	c, g := s.c, h.g
	if err != nil {
		reason := "authentication failed"
		if ae, ok := err.(*auth.Error); ok {
			reason = ae.Reason
		}
		// A refusal that is the server's (checks overloaded, shutting down,
		// a check that panicked) says nothing of the token: a refresh the
		// pool is too busy to take leaves the connection its token, and the
		// client may send it again; otherwise the close code says "try
		// again later" (1013) or "server error" (1011), not 4001.
		code := closeAuthFailed
		switch auth.Status(err) {
		case http.StatusServiceUnavailable:
			if refresh && s.opened && errors.Is(err, auth.ErrBusy) {
				pushError(c, codeUnavailable, "", reason+": the token is unchanged, send the refresh again")
				return
			}
			code = codec.StatusTryAgainLater
		case http.StatusInternalServerError:
			code = codec.StatusInternalError
		}
		g.closeConn(c, code, reason)
		return
	}
	if !s.opened {
		g.sendJSON(c, h.identityReply("authenticated", s, id))
		h.start(s, id)
		return
	}
	if old := s.id.Load(); old != nil && old.Sub != "" && old.Sub != id.Sub {
		g.closeConn(c, closeAuthFailed, "the new token is for another user")
		return
	}
	g.setIdentity(s, id)
	op := "refreshed"
	if !refresh {
		op = "authenticated"
		g.counts.authenticated.Add(1)
	} else {
		g.counts.refreshed.Add(1)
	}
	g.sendJSON(c, h.identityReply(op, s, id))
}

// identityReply is the answer to auth, refresh and whoami:
// {"op":"authenticated","id":"node.42","user":"alice","expires":1767225600}.
func (h *authHandler) identityReply(op string, s *session, id *auth.Identity) any {
	var exp int64
	if id != nil && !id.Expires.IsZero() {
		exp = id.Expires.Unix()
	}
	user := ""
	if id != nil {
		user = id.Sub
	}
	return struct {
		Op      string `json:"op"`
		ID      string `json:"id"`
		User    string `json:"user,omitempty"`
		Expires int64  `json:"expires,omitempty"`
	}{op, h.g.connID(s.c.ID()), user, exp}
}

func (h *authHandler) whoami(s *session) {
	h.g.sendJSON(s.c, h.identityReply("whoami", s, s.id.Load()))
}

func (g *authn) sendJSON(c *engine.Conn, v any) {
	b, _ := json.Marshal(v)
	_ = c.Write(codec.OpText, b)
}

// OnTimer handles the deadline of c's session (engine.Conn.SetTimer, on
// the loop's timing wheel): the auth message's, a token's expiry, or the
// end of its refresh grace. While an auth or refresh token is checked off
// the loop the deadline waits for the answer: a refusal closes the
// connection, an acceptance sets the new token's expiry (setIdentity).
func (h *authHandler) OnTimer(c *engine.Conn) {
	g := h.g
	s := g.reg.get(c)
	if s == nil || !c.IsOpen() || s.checking {
		return
	}
	now := time.Now().UnixNano()
	id := s.id.Load()
	switch {
	case id == nil:
		if now < s.authBy {
			c.SetTimer(time.Unix(0, s.authBy))
			return
		}
		g.closeConn(c, closeAuthTimeout, "no auth message in time")
	case id.Expires.IsZero():
	case now < id.Expires.UnixNano():
		c.SetTimer(id.Expires) // refreshed meanwhile (or early): the new expiry
	case s.expired == 0:
		s.expired = now
		g.counts.expired.Add(1)
		g.sendJSON(c, struct {
			Op    string `json:"op"`
			Grace int64  `json:"grace"`
		}{"expired", int64(g.cfg.RefreshGrace / time.Second)})
		c.SetTimer(time.Unix(0, now+int64(g.cfg.RefreshGrace)))
	case now >= s.expired+int64(g.cfg.RefreshGrace):
		g.closeConn(c, closeAuthExpired, "token expired")
	default:
		c.SetTimer(time.Unix(0, s.expired+int64(g.cfg.RefreshGrace)))
	}
}

// topicGuard is what the push mode asks of the authentication.
type topicGuard interface {
	canSubscribe(c *engine.Conn, topic string) bool
	canPublish(c *engine.Conn, topic string) bool
}

func (g *authn) canSubscribe(c *engine.Conn, topic string) bool {
	if s := g.reg.get(c); s != nil {
		if id := s.id.Load(); id != nil {
			return id.CanSubscribe(topic)
		}
	}
	return false
}

func (g *authn) canPublish(c *engine.Conn, topic string) bool {
	if s := g.reg.get(c); s != nil {
		if id := s.id.Load(); id != nil {
			return id.CanPublish(topic)
		}
	}
	return false
}

// guard returns g as the push mode's topicGuard, or nil with -auth off.
func (g *authn) guard() topicGuard {
	if g == nil {
		return nil
	}
	return g
}

// mayPublish reports whether c may publish to topic: its identity's
// "publish" with -auth, -client-publish without.
func (h *pushHandler) mayPublish(c *engine.Conn, topic string) bool {
	if h.perm != nil {
		return h.perm.canPublish(c, topic)
	}
	return topicAllowed(h.allowed, topic)
}

// mayTalk reports whether c may send messages to room, its chat room: its
// identity's "publish" with -auth, always without.
func (h *chatHandler) mayTalk(c *engine.Conn, room string) bool {
	return h.perm == nil || h.perm.canPublish(c, room)
}

// maySubscribe reports whether c may subscribe to topic (always, without
// -auth).
func (h *pushHandler) maySubscribe(c *engine.Conn, topic string) bool {
	return h.perm == nil || h.perm.canSubscribe(c, topic)
}

// registry indexes the sessions by connection, by id and by user.
type registry struct {
	mu     sync.RWMutex
	byConn map[*engine.Conn]*session
	byID   map[uint64]*session
	byUser map[string]map[*session]struct{}
}

func (r *registry) init() {
	r.byConn = map[*engine.Conn]*session{}
	r.byID = map[uint64]*session{}
	r.byUser = map[string]map[*session]struct{}{}
}

func (r *registry) add(s *session) {
	r.mu.Lock()
	r.byConn[s.c] = s
	r.byID[s.c.ID()] = s
	r.mu.Unlock()
}

func (r *registry) get(c *engine.Conn) *session {
	r.mu.RLock()
	s := r.byConn[c]
	r.mu.RUnlock()
	return s
}

func (r *registry) getID(id uint64) *session {
	r.mu.RLock()
	s := r.byID[id]
	r.mu.RUnlock()
	return s
}

// setUser moves s from old's user to id's.
func (r *registry) setUser(s *session, old, id *auth.Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old != nil && old.Sub != "" {
		r.unindex(s, old.Sub)
	}
	if id.Sub != "" {
		set := r.byUser[id.Sub]
		if set == nil {
			set = map[*session]struct{}{}
			r.byUser[id.Sub] = set
		}
		set[s] = struct{}{}
	}
}

func (r *registry) unindex(s *session, user string) {
	if set := r.byUser[user]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(r.byUser, user)
		}
	}
}

func (r *registry) remove(s *session) {
	r.mu.Lock()
	delete(r.byConn, s.c)
	delete(r.byID, s.c.ID())
	if id := s.id.Load(); id != nil && id.Sub != "" {
		r.unindex(s, id.Sub)
	}
	r.mu.Unlock()
}

// userConns returns the connections of user on this node.
func (r *registry) userConns(user string) []*engine.Conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var cs []*engine.Conn
	for s := range r.byUser[user] {
		cs = append(cs, s.c)
	}
	return cs
}

// closeConn closes c for a reason of authentication, with one of the
// 4000-4004 codes, and logs it (at most once a second). Loop only.
func (g *authn) closeConn(c *engine.Conn, code codec.StatusCode, reason string) {
	if ce := g.log.Check(zap.DebugLevel, "closed by authentication"); ce != nil {
		if ok, suppressed := g.closedLog.allow(); ok {
			user := ""
			if s := g.reg.get(c); s != nil {
				if id := s.id.Load(); id != nil {
					user = id.Sub
				}
			}
			ce.Write(zap.Uint64("id", c.ID()), zap.String("user", user), zap.Int("code", int(code)), zap.String("reason", reason),
				zap.Int64("suppressed_since_last_log", suppressed))
		}
	}
	g.counts.countClose(code)
	c.CloseNow(code, reason)
}
