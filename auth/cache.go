package auth

import (
	"container/list"
	"sync"
	"time"
)

// cacheKey identifies a user name and password without holding either: a
// keyed hash of both (see Htpasswd.key).
type cacheKey [32]byte

// cache is a bounded LRU of successful checks, each valid for ttl.
type cache struct {
	mu  sync.Mutex
	max int
	ttl time.Duration
	now func() time.Time // time.Now; tests set their own clock
	m   map[cacheKey]*list.Element
	lru list.List // of *cacheEntry, most recent first
}

type cacheEntry struct {
	key     cacheKey
	id      *Identity
	expires time.Time
}

func newCache(max int, ttl time.Duration) *cache {
	return &cache{max: max, ttl: ttl, now: time.Now, m: make(map[cacheKey]*list.Element)}
}

// get returns the identity cached under k, or nil if there is none or it
// has expired.
func (c *cache) get(k cacheKey) *Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return nil
	}
	c.lru.MoveToFront(el)
	return e.id
}

// put caches id under k for ttl, evicting the least recently used entry
// when the cache is full.
func (c *cache) put(k cacheKey, id *Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	expires := c.now().Add(c.ttl)
	if el, ok := c.m[k]; ok {
		e := el.Value.(*cacheEntry)
		e.id, e.expires = id, expires
		c.lru.MoveToFront(el)
		return
	}
	if c.lru.Len() >= c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.m, last.Value.(*cacheEntry).key)
	}
	c.m[k] = c.lru.PushFront(&cacheEntry{key: k, id: id, expires: expires})
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
