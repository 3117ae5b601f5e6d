package natsbroker

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSubjectEscapeTable(t *testing.T) {
	for _, tc := range []struct{ topic, token string }{
		{"news", "news"},
		{"", "%"},
		{"a.b", "a%2Eb"},
		{"a b", "a%20b"},
		{"*", "%2A"},
		{">", "%3E"},
		{"a.*.>", "a%2E%2A%2E%3E"},
		{"$SYS", "%24SYS"},
		{"x$y", "x%24y"},
		{"100%", "100%25"},
		{"%25", "%2525"},
		{"tab\there", "tab%09here"},
		{"line\r\n", "line%0D%0A"},
		{"\x00\x7f", "%00%7F"},
		{"é", "%C3%A9"},
		{"chat:room/1", "chat:room/1"},
		{"presence lobby", "presence%20lobby"},
		{"\xff", "%FF"}, // not UTF-8: bytes are bytes
	} {
		if got := EscapeToken(tc.topic); got != tc.token {
			t.Errorf("EscapeToken(%q) = %q, want %q", tc.topic, got, tc.token)
		}
		if n := escapedLen(tc.topic); n != len(tc.token) {
			t.Errorf("escapedLen(%q) = %d, want %d", tc.topic, n, len(tc.token))
		}
		back, err := UnescapeToken(tc.token)
		if err != nil || back != tc.topic {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", tc.token, back, err, tc.topic)
		}
	}
}

// TestSubjectUnescapeRejects: only what EscapeToken makes is accepted, so
// that one topic has one subject.
func TestSubjectUnescapeRejects(t *testing.T) {
	for _, tok := range []string{
		"", "a.b", "a b", "*", ">", "$SYS", "%", // "%" alone is the empty topic: accepted below
		"%2", "%2e", "%GG", "%41", "x%", "%%", "é", "a\tb",
	} {
		if tok == "%" {
			if s, err := UnescapeToken(tok); err != nil || s != "" {
				t.Errorf("UnescapeToken(%q) = %q, %v; want the empty topic", tok, s, err)
			}
			continue
		}
		if s, err := UnescapeToken(tok); err == nil {
			t.Errorf("UnescapeToken(%q) = %q, want an error", tok, s)
		}
	}
}

// TestSubjectLongTopics: a topic whose token would be too long travels on
// a hashed subject of fixed length; a token of exactly MaxTokenLen does not.
func TestSubjectLongTopics(t *testing.T) {
	exact := strings.Repeat("a", MaxTokenLen)
	if got := string(appendTopicSubject(nil, "wsd", exact)); got != "wsd.t."+exact {
		t.Fatalf("subject of a %d-byte topic: %q", MaxTokenLen, got)
	}
	long := strings.Repeat(".", MaxTokenLen/3+1) // escapes to over MaxTokenLen bytes
	got := string(appendTopicSubject(nil, "wsd", long))
	if !strings.HasPrefix(got, "wsd.h.") || len(got) != len("wsd.h.")+32 {
		t.Fatalf("subject of a long topic: %q", got)
	}
	if other := string(appendTopicSubject(nil, "wsd", long+".")); other == got {
		t.Fatal("two long topics share a subject")
	}
}

// checkToken fails unless tok is one NATS subject token that no NATS rule
// gives a meaning to.
func checkToken(t *testing.T, s, tok string) {
	t.Helper()
	if tok == "" || strings.HasPrefix(tok, "$") || tok == "*" || tok == ">" {
		t.Fatalf("EscapeToken(%q) = %q", s, tok)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			t.Fatalf("EscapeToken(%q) = %q: byte %q", s, tok, c)
		}
	}
}

func FuzzSubjectEscape(f *testing.F) {
	for _, s := range []string{"", "news", "a.b", "$SYS.>", "%", "%41", "é", "\x00", "a b*c>d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		checkToken(t, s, tok)
		if escapedLen(s) != len(tok) {
			t.Fatalf("escapedLen(%q) = %d, token %q", s, escapedLen(s), tok)
		}
		if back, err := UnescapeToken(tok); err != nil || back != s {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", s, back, err)
		}
		// The other way: whatever UnescapeToken accepts escapes back to
		// itself (one topic, one token).
		if u, err := UnescapeToken(s); err == nil {
			if again := EscapeToken(u); again != s {
				t.Fatalf("EscapeToken(UnescapeToken(%q)) = %q", s, again)
			}
		}
		if s != "" && utf8.ValidString(s) && !strings.ContainsAny(s, ".*>%$") && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			if tok != s {
				t.Fatalf("EscapeToken(%q) = %q, want it unchanged", s, tok)
			}
		}
	})
}
