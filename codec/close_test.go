package codec

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

// validCloseCode is the list of ranges documented on StatusCode.ValidOnWire,
// written out independently: 1000-1003, 1007-1014, 3000-4999.
func validCloseCode(c int) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		code   StatusCode
		reason string
		err    error
	}{
		{name: "empty", in: nil, code: StatusNoStatusRcvd},
		{name: "empty non-nil", in: []byte{}, code: StatusNoStatusRcvd},
		{name: "one byte", in: []byte{0x03}, err: ErrCloseOneByte},
		{name: "normal, no reason", in: closePayload(1000, ""), code: StatusNormalClosure},
		{name: "going away with reason", in: closePayload(1001, "bye"), code: StatusGoingAway, reason: "bye"},
		{name: "application code with UTF-8 reason", in: closePayload(4000, "κόσμε €😀"), code: 4000, reason: "κόσμε €😀"},
		{name: "reason of 123 bytes", in: closePayload(1000, strings.Repeat("r", 123)), code: 1000, reason: strings.Repeat("r", 123)},
		{name: "1005 is never sent", in: closePayload(1005, ""), err: ErrCloseCode},
		{name: "1006 is never sent", in: closePayload(1006, ""), err: ErrCloseCode},
		{name: "1015 is never sent", in: closePayload(1015, ""), err: ErrCloseCode},
		{name: "zero code", in: closePayload(0, ""), err: ErrCloseCode},
		{name: "code 5000", in: closePayload(5000, ""), err: ErrCloseCode},
		{name: "code 65535", in: closePayload(65535, ""), err: ErrCloseCode},
		{name: "bad code wins over bad reason", in: closePayload(999, "\xff"), err: ErrCloseCode},
		{name: "invalid UTF-8 reason", in: closePayload(1000, "\xff"), err: ErrInvalidCloseUTF8},
		{name: "surrogate in reason", in: closePayload(1000, "ok\xed\xa0\x80"), err: ErrInvalidCloseUTF8},
		{name: "truncated rune in reason", in: closePayload(3000, "ok\xe2\x82"), err: ErrInvalidCloseUTF8},
		{name: "overlong in reason", in: closePayload(1000, "\xc0\xaf"), err: ErrInvalidCloseUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, err := ParseClose(tt.in)
			if err != tt.err || code != tt.code || string(reason) != tt.reason {
				t.Fatalf("ParseClose(% x) = %d, %q, %v; want %d, %q, %v", tt.in, code, reason, err, tt.code, tt.reason, tt.err)
			}
			if err != nil {
				want := StatusProtocolError
				if err == ErrInvalidCloseUTF8 {
					want = StatusInvalidPayload
				}
				if CloseStatus(err) != want {
					t.Fatalf("CloseStatus(%v) = %d, want %d", err, CloseStatus(err), want)
				}
				return
			}
			if len(reason) > 0 && &reason[0] != &tt.in[2] {
				t.Fatal("reason does not alias the payload")
			}
		})
	}
}

// TestParseCloseEveryCode checks every code from 0 to 5000, and 65535,
// against the documented ranges, both through ParseClose and ValidOnWire.
func TestParseCloseEveryCode(t *testing.T) {
	codes := make([]int, 0, 5002)
	for c := 0; c <= 5000; c++ {
		codes = append(codes, c)
	}
	codes = append(codes, 65535)
	nValid := 0
	for _, c := range codes {
		valid := validCloseCode(c)
		if valid {
			nValid++
		}
		if got := StatusCode(c).ValidOnWire(); got != valid {
			t.Errorf("StatusCode(%d).ValidOnWire() = %v, want %v", c, got, valid)
		}
		for _, reason := range []string{"", "why"} {
			code, r, err := ParseClose(closePayload(c, reason))
			if valid {
				if err != nil || int(code) != c || string(r) != reason {
					t.Errorf("ParseClose(%d, %q) = %d, %q, %v; want it accepted", c, reason, code, r, err)
				}
			} else if err != ErrCloseCode || code != 0 || r != nil {
				t.Errorf("ParseClose(%d, %q) = %d, %q, %v; want ErrCloseCode", c, reason, code, r, err)
			}
		}
	}
	if want := 4 + 8 + 2000; nValid != want {
		t.Fatalf("%d valid codes, want %d", nValid, want)
	}
}

// TestParseCloseAutobahn uses the close codes of the Autobahn test suite
// cases 7.7.x (must be accepted) and 7.9.x (must fail the connection).
func TestParseCloseAutobahn(t *testing.T) {
	for _, c := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		if _, _, err := ParseClose(closePayload(c, "")); err != nil {
			t.Errorf("code %d: %v, want accepted", c, err)
		}
	}
	for _, c := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		if _, _, err := ParseClose(closePayload(c, "")); err != ErrCloseCode {
			t.Errorf("code %d: %v, want %v", c, err, ErrCloseCode)
		}
	}
}

func TestAppendClose(t *testing.T) {
	tests := []struct {
		name   string
		dst    []byte
		code   StatusCode
		reason string
		want   []byte
	}{
		{name: "zero code appends nothing", code: 0, reason: "ignored", want: nil},
		{name: "zero code keeps dst", dst: []byte{0x88}, code: 0, want: []byte{0x88}},
		{name: "code only", code: 1000, want: []byte{0x03, 0xe8}},
		{name: "code and reason", code: StatusGoingAway, reason: "bye", want: []byte{0x03, 0xe9, 'b', 'y', 'e'}},
		{name: "appends to dst", dst: []byte{0x88, 0x05}, code: 1002, reason: "p", want: []byte{0x88, 0x05, 0x03, 0xea, 'p'}},
		{name: "application code", code: 4999, want: []byte{0x13, 0x87}},
		{name: "123-byte reason kept", code: 1000, reason: strings.Repeat("a", 123), want: closePayload(1000, strings.Repeat("a", 123))},
		{name: "124-byte reason cut", code: 1000, reason: strings.Repeat("a", 124), want: closePayload(1000, strings.Repeat("a", 123))},
		{name: "long reason cut", code: 1011, reason: strings.Repeat("x", 1000), want: closePayload(1011, strings.Repeat("x", 123))},
		{name: "2-byte rune across 123", code: 1000, reason: strings.Repeat("a", 122) + "é", want: closePayload(1000, strings.Repeat("a", 122))},
		{name: "3-byte rune ending at 123", code: 1000, reason: strings.Repeat("a", 120) + "€b", want: closePayload(1000, strings.Repeat("a", 120)+"€")},
		{name: "4-byte rune across 123", code: 1000, reason: strings.Repeat("a", 121) + "😀", want: closePayload(1000, strings.Repeat("a", 121))},
		{name: "invalid byte cuts the reason", code: 1000, reason: "ok\xffrest", want: closePayload(1000, "ok")},
		{name: "truncated rune cuts the reason", code: 1000, reason: "ab\xe2\x82", want: closePayload(1000, "ab")},
		{name: "surrogate cuts the reason", code: 1000, reason: "x\xed\xa0\x80y", want: closePayload(1000, "x")},
		{name: "invalid first byte leaves no reason", code: 1001, reason: "\xc0\xafabc", want: []byte{0x03, 0xe9}},
		{name: "U+FFFD itself is valid", code: 1000, reason: "a\uFFFDb", want: closePayload(1000, "a\uFFFDb")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendClose(bytes.Clone(tt.dst), tt.code, tt.reason)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("AppendClose(% x, %d, %q) = % x, want % x", tt.dst, tt.code, tt.reason, got, tt.want)
			}
		})
	}
}

// TestAppendCloseRuneBoundary cuts reasons whose runes of every length
// straddle the 123-byte limit at every position, and checks the result is
// the longest prefix on a rune boundary that fits, parses back, and fits a
// control frame.
func TestAppendCloseRuneBoundary(t *testing.T) {
	for _, r := range []string{"é", "€", "😀", "a"} {
		for pad := 115; pad <= 125; pad++ {
			reason := strings.Repeat("a", pad) + strings.Repeat(r, 4)
			want := "" // whole runes while they fit in 123 bytes
			for _, ru := range reason {
				if len(want)+utf8.RuneLen(ru) > MaxControlPayload-2 {
					break
				}
				want += string(ru)
			}
			got := AppendClose(nil, 3000, reason)
			if len(got) > MaxControlPayload {
				t.Fatalf("pad %d rune %q: payload of %d bytes", pad, r, len(got))
			}
			if string(got[2:]) != want {
				t.Fatalf("pad %d rune %q: reason cut to %d bytes, want %d", pad, r, len(got)-2, len(want))
			}
			code, back, err := ParseClose(got)
			if err != nil || code != 3000 || string(back) != want {
				t.Fatalf("pad %d rune %q: ParseClose(AppendClose(...)) = %d, %d bytes, %v", pad, r, code, len(back), err)
			}
		}
	}
}

func TestAppendCloseZeroAllocs(t *testing.T) {
	dst := make([]byte, 0, MaxControlPayload)
	reason := strings.Repeat("€", 60)
	allocs := testing.AllocsPerRun(100, func() {
		dst = AppendClose(dst[:0], StatusGoingAway, reason)
	})
	if allocs != 0 {
		t.Fatalf("AppendClose: %v allocs per run, want 0", allocs)
	}
}
