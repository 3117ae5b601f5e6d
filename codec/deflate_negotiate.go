package codec

import (
	"strconv"
	"strings"
)

// Deflate is what a connection negotiated of permessage-deflate (RFC 7692).
// The zero value means none. It is 4 bytes, kept in the connection's
// Decoder.
type Deflate struct {
	// On: permessage-deflate is in use; RSV1 marks compressed messages.
	On bool
	// ServerMaxWindowBits limits the window of what the server sends (8 to
	// 15). The server compresses each message on its own, so a message no
	// longer than 1<<ServerMaxWindowBits bytes is within it whatever the
	// compressor does; longer ones are sent uncompressed. 15 means no limit.
	ServerMaxWindowBits uint8
	// ClientContextTakeover: the client may compress a message using the
	// messages before it, so inflating needs the last
	// 1<<ClientMaxWindowBits bytes the connection received (opt-in).
	ClientContextTakeover bool
	ClientMaxWindowBits   uint8
}

// Fits reports whether a message of n bytes may be sent compressed within
// the negotiated server window.
func (d Deflate) Fits(n int) bool {
	return d.ServerMaxWindowBits >= 15 || n <= 1<<d.ServerMaxWindowBits
}

// NegotiateDeflate answers the permessage-deflate offers in the
// Sec-WebSocket-Extensions header value ext (several header lines joined
// with commas), following RFC 7692 section 7: it takes the first offer
// whose parameters are all known, valid and not repeated, and declines the
// others. The answer always has server_no_context_takeover (the server
// keeps no state between messages), echoes server_max_window_bits when it
// is offered, and has client_no_context_takeover unless
// allowClientTakeover is set (then, if the offer has client_max_window_bits,
// the answer names the window the server keeps: the offered value, at most
// ClientWindowBits). client_max_window_bits is never in an answer to an offer without it.
// It returns the parameters and the header value to answer with, or a zero
// Deflate and "" to decline.
func NegotiateDeflate(ext string, allowClientTakeover bool) (Deflate, string) {
	for len(ext) > 0 {
		var offer string
		offer, ext = cutOffer(ext)
		name, params, _ := strings.Cut(offer, ";")
		if !strings.EqualFold(strings.TrimSpace(name), "permessage-deflate") {
			continue
		}
		if d, resp, ok := acceptOffer(params, allowClientTakeover); ok {
			return d, resp
		}
	}
	return Deflate{}, ""
}

// cutOffer splits off the first comma-separated element of an extension
// list, honouring quoted strings.
func cutOffer(s string) (first, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// acceptOffer checks one offer's parameters (";"-separated) and builds the
// answer.
func acceptOffer(params string, allowClientTakeover bool) (d Deflate, resp string, ok bool) {
	var seen [4]bool // server_no_context_takeover, client_no_context_takeover, server_max_window_bits, client_max_window_bits
	d = Deflate{On: true, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		key, val, hasVal := strings.Cut(p, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		val = unquote(strings.TrimSpace(val))
		if key == "" && !hasVal {
			continue // an empty parameter, as in "permessage-deflate;"
		}
		var i int
		switch key {
		case "server_no_context_takeover":
			i = 0
		case "client_no_context_takeover":
			i = 1
		case "server_max_window_bits":
			i = 2
		case "client_max_window_bits":
			i = 3
		default:
			return d, "", false // unknown parameter
		}
		if seen[i] {
			return d, "", false // repeated parameter
		}
		seen[i] = true
		switch i {
		case 0, 1:
			if hasVal {
				return d, "", false
			}
		case 2:
			bits, ok := windowBits(val)
			if !hasVal || !ok {
				return d, "", false
			}
			d.ServerMaxWindowBits = bits
		case 3:
			if hasVal {
				bits, ok := windowBits(val)
				if !ok {
					return d, "", false
				}
				d.ClientMaxWindowBits = bits
			}
		}
	}
	var b strings.Builder
	b.WriteString("permessage-deflate; server_no_context_takeover")
	if seen[2] {
		b.WriteString("; server_max_window_bits=")
		b.WriteString(strconv.Itoa(int(d.ServerMaxWindowBits)))
	}
	if allowClientTakeover && !seen[1] {
		d.ClientContextTakeover = true
		if seen[3] { // the client lets the server choose its window: keep it small
			d.ClientMaxWindowBits = min(d.ClientMaxWindowBits, ClientWindowBits)
			b.WriteString("; client_max_window_bits=")
			b.WriteString(strconv.Itoa(int(d.ClientMaxWindowBits)))
		}
	} else {
		b.WriteString("; client_no_context_takeover")
		d.ClientMaxWindowBits = 0
	}
	return d, b.String(), true
}

// ClientWindowBits is the window NegotiateDeflate asks of a client that
// compresses with context takeover and offers client_max_window_bits: 4 KiB
// (the window the server keeps for that connection). A client that does
// not offer the parameter (Firefox) uses 32 KiB.
const ClientWindowBits = 12

// windowBits parses a window size parameter: a decimal from 8 to 15
// without leading zeros.
func windowBits(v string) (uint8, bool) {
	if v == "" || v[0] == '0' || strings.Trim(v, "0123456789") != "" {
		return 0, false // 1*DIGIT, without leading zeros
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 {
		return 0, false
	}
	return uint8(n), true
}

// unquote removes the quotes of an RFC 7230 quoted-string value.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return strings.ReplaceAll(v[1:len(v)-1], `\`, "")
	}
	return v
}
