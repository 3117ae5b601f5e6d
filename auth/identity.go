package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Identity is an authenticated client: who it is and what it may do. It is
// immutable once made, and may be shared by many connections (every
// connection of an htpasswd user, every anonymous connection): read its
// fields, never change them.
type Identity struct {
	// Sub is the user id: a JWT's "sub", a basic-auth user name, or ""
	// for an anonymous client (the rule for user ids is in the package doc).
	Sub string
	// Expires is the token's "exp": the connection must stop being trusted
	// then (the daemon closes it or asks for a new token). Zero for basic
	// auth and anonymous clients, which do not expire.
	Expires time.Time
	// Info is the token's "info" claim, a JSON object kept as it was sent,
	// or nil.
	Info json.RawMessage

	subscribe, publish []pattern
}

// CanSubscribe reports whether the client may subscribe to topic: a
// pattern of its subscribe list matches it, or it is the client's personal
// topic, PersonalPrefix + Sub. It does not allocate.
func (id *Identity) CanSubscribe(topic string) bool {
	if id.Sub != "" && len(topic) == len(PersonalPrefix)+len(id.Sub) &&
		strings.HasPrefix(topic, PersonalPrefix) && strings.HasSuffix(topic, id.Sub) {
		return true
	}
	return matchAny(id.subscribe, topic, id.Sub)
}

// CanPublish reports whether the client may publish to topic: a pattern of
// its publish list matches it. It does not allocate.
func (id *Identity) CanPublish(topic string) bool {
	return matchAny(id.publish, topic, id.Sub)
}

// Permissions are topic patterns (see the package doc) granted to clients
// that do not carry their own: basic-auth users and anonymous clients.
type Permissions struct {
	Subscribe []string // topics the client may subscribe to
	Publish   []string // topics the client may publish to
}

// compile compiles both lists; an error names the list and the pattern.
func (p Permissions) compile() (sub, pub []pattern, err error) {
	if sub, err = compilePatterns(p.Subscribe); err != nil {
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	if pub, err = compilePatterns(p.Publish); err != nil {
		return nil, nil, fmt.Errorf("publish: %w", err)
	}
	return sub, pub, nil
}

// Anonymous returns the identity of clients that connect without
// credentials where authentication is optional: no user id, no personal
// topic, and the topics p grants. A pattern with "{sub}" is refused, since
// it could never match.
func Anonymous(p Permissions) (*Identity, error) {
	sub, pub, err := p.compile()
	if err != nil {
		return nil, fmt.Errorf("auth: anonymous %w", err)
	}
	for _, ps := range [][]pattern{sub, pub} {
		for i := range ps {
			if ps[i].usesSub() {
				return nil, errors.New(`auth: anonymous clients have no user id: a pattern with "{sub}" would match nothing`)
			}
		}
	}
	return &Identity{subscribe: sub, publish: pub}, nil
}
