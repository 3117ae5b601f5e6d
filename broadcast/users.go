package broadcast

import (
	"context"
	"sync"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// Users: with Options.UserOf, the hub indexes its connections by the user
// each belongs to (an authenticated identity: a JWT's sub, a basic-auth
// name), so that a message can be sent to every connection of a user, and
// a user's connections found to disconnect them. Connections with no user
// ("") are not indexed and cost nothing.

// userIndex maps users to their connections on this node, sharded like
// connIndex.
type userIndex struct {
	shards [32]struct {
		sync.RWMutex
		m map[string][]*engine.Conn
	}
}

func (x *userIndex) shard(user string) *struct {
	sync.RWMutex
	m map[string][]*engine.Conn
} {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(user); i++ {
		h = (h ^ uint32(user[i])) * 16777619
	}
	return &x.shards[h%uint32(len(x.shards))]
}

func (x *userIndex) add(user string, c *engine.Conn) {
	sh := x.shard(user)
	sh.Lock()
	if sh.m == nil {
		sh.m = make(map[string][]*engine.Conn)
	}
	sh.m[user] = append(sh.m[user], c)
	sh.Unlock()
}

func (x *userIndex) remove(user string, c *engine.Conn) {
	sh := x.shard(user)
	sh.Lock()
	defer sh.Unlock()
	cs := sh.m[user]
	for i, o := range cs {
		if o == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			break
		}
	}
	if len(cs) == 0 {
		delete(sh.m, user)
	} else {
		sh.m[user] = cs
	}
}

// UserConns returns the open connections of user on this node. Any
// goroutine. Needs Options.UserOf.
func (h *Hub) UserConns(user string) []*engine.Conn {
	if user == "" {
		return nil
	}
	sh := h.users.shard(user)
	sh.RLock()
	defer sh.RUnlock()
	return append([]*engine.Conn(nil), sh.m[user]...)
}

// SendToUser sends one message to every connection of user on this node,
// through engine.Conn.Send, and returns how many took it. Any goroutine.
// Needs Options.UserOf.
func (h *Hub) SendToUser(user string, op codec.OpCode, payload []byte) int {
	n := 0
	for _, c := range h.UserConns(user) {
		if c.Send(op, payload) == nil {
			n++
		}
	}
	return n
}

// Member is one subscriber of a topic, as Members lists it.
type Member struct {
	ID   uint64 `json:"id"`
	User string `json:"user,omitempty"` // from Options.UserOf
}

// Members lists the subscribers of topic on this node, at most limit of
// them (0: all), and returns their total count. It asks each event loop
// with subscribers for its own (their sets belong to the loops), so it
// waits for them; ctx bounds the wait. Any goroutine, not a loop's.
func (h *Hub) Members(ctx context.Context, topic string, limit int) (total int, members []Member, err error) {
	h.mu.RLock()
	t := h.topics[topic]
	var sets []*loopTopic
	if t != nil {
		sets = *t.sets.Load()
	}
	h.mu.RUnlock()
	replies := make(chan []Member, len(sets))
	for _, lt := range sets {
		lt.lh.loop.Post(&listMembers{h: h, lt: lt, out: replies})
	}
	for range sets {
		select {
		case ms := <-replies:
			total += len(ms)
			for _, m := range ms {
				if limit <= 0 || len(members) < limit {
					members = append(members, m)
				}
			}
		case <-ctx.Done():
			return total, members, ctx.Err()
		}
	}
	return total, members, nil
}

// listMembers lists one loop's subscribers of a topic, on that loop.
type listMembers struct {
	h   *Hub
	lt  *loopTopic
	out chan<- []Member
}

func (l *listMembers) Run(*engine.Loop) {
	ms := make([]Member, 0, len(l.lt.members))
	for _, s := range l.lt.members {
		if s.c.IsOpen() {
			m := Member{ID: s.c.ID()}
			if f := l.h.opts.UserOf; f != nil {
				m.User = f(s.c)
			}
			ms = append(ms, m)
		}
	}
	l.out <- ms
}
