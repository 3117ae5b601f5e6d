package auth

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Topic patterns (their semantics are in the package doc). A pattern is
// at most MaxPatternBytes of printable UTF-8 with no space and no comma (as
// a topic name), a "*" only as its last byte, and "{" and "}" only in
// "{sub}".

// MaxPatternBytes is the longest topic pattern, the daemon's longest topic.
const MaxPatternBytes = 256

// MaxSubBytes is the longest user id, so that the personal topic
// PersonalPrefix+sub is a valid topic name.
const MaxSubBytes = 128

// PersonalPrefix starts a user's personal topic: every identity with a
// user id may subscribe to PersonalPrefix + its id ("user.alice").
const PersonalPrefix = "user."

// subPlaceholder stands for the user id in a pattern.
const subPlaceholder = "{sub}"

// pattern is a compiled topic pattern: literal pieces with the user id
// between each two of them, and whether it ends in "*".
type pattern struct {
	pieces []string // "user.{sub}.x*" is ["user.", ".x"]
	prefix bool
}

// compilePattern checks s and compiles it.
func compilePattern(s string) (pattern, error) {
	if why := checkPattern(s); why != "" {
		return pattern{}, fmt.Errorf("topic pattern %s: %s", quoteShort(s), why)
	}
	p := pattern{prefix: strings.HasSuffix(s, "*")}
	s = strings.TrimSuffix(s, "*")
	p.pieces = strings.Split(s, subPlaceholder)
	return p, nil
}

// checkPattern returns why s is not a valid pattern, or "".
func checkPattern(s string) string {
	if why := checkText(s, MaxPatternBytes, " ,", "a space, a comma"); why != "" {
		return why
	}
	switch {
	case strings.Contains(strings.TrimSuffix(s, "*"), "*"):
		return `"*" is allowed only at the end`
	case strings.ContainsAny(strings.ReplaceAll(s, subPlaceholder, ""), "{}"):
		return `"{" and "}" are allowed only in "{sub}"`
	}
	return ""
}

// checkText returns why s is not 1 to max bytes of printable UTF-8 with
// none of the runes of forbidden (described by what), or "".
func checkText(s string, max int, forbidden, what string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > max:
		return fmt.Sprintf("longer than %d bytes", max)
	case !utf8.ValidString(s):
		return "not UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || strings.ContainsRune(forbidden, r) }):
		return "holds " + what + " or a character that is not printable"
	}
	return ""
}

// match reports whether topic matches p for the user sub.
func (p *pattern) match(topic, sub string) bool {
	if len(p.pieces) > 1 && sub == "" {
		return false
	}
	for i, lit := range p.pieces {
		if i > 0 {
			if !strings.HasPrefix(topic, sub) {
				return false
			}
			topic = topic[len(sub):]
		}
		if !strings.HasPrefix(topic, lit) {
			return false
		}
		topic = topic[len(lit):]
	}
	return p.prefix || topic == ""
}

// usesSub reports whether p has "{sub}".
func (p *pattern) usesSub() bool { return len(p.pieces) > 1 }

// compilePatterns compiles a list of patterns.
func compilePatterns(list []string) ([]pattern, error) {
	if len(list) == 0 {
		return nil, nil
	}
	ps := make([]pattern, 0, len(list))
	for _, s := range list {
		p, err := compilePattern(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// matchAny reports whether topic matches one of ps for the user sub.
func matchAny(ps []pattern, topic, sub string) bool {
	for i := range ps {
		if ps[i].match(topic, sub) {
			return true
		}
	}
	return false
}

// checkSub returns why s cannot be a user id, or "". A user id is 1 to
// MaxSubBytes of printable UTF-8 with none of space . , * > { }: it is one
// segment of a topic name, so "user.{sub}" and "chat.{sub}.*" of one user
// can never name another user's topics (were "a.b" an id, the "chat.a.*"
// of user "a" would hold the "chat.a.b" of user "a.b"), and it can be
// neither read as a pattern nor as a NATS wildcard.
func checkSub(s string) string {
	return checkText(s, MaxSubBytes, " .,*>{}", "a space, one of . , * > { }")
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}
