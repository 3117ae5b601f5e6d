package engine

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// feed gives req to u in pieces of size bytes, resuming the search for the
// end of the header the way Loop.handshake does, and returns the outcome
// once it is not needMore (or needMore when req runs out).
func feed(u *upgrader, req []byte, size int) (outcome, int) {
	from := 0
	for n := size; ; n += size {
		n = min(n, len(req))
		buf := req[:min(n, u.o.MaxHeaderBytes)]
		res, headLen, _ := u.process(buf, n, from, nil)
		if res != needMore || n == len(req) {
			return res, headLen
		}
		from = resumeAt(buf)
	}
}

// TestUpgradeResumeLinear: a request trickled a byte at a time is searched
// for its end in linear time (each byte a bounded number of times), not
// rescanned from the start on every segment.
func TestUpgradeResumeLinear(t *testing.T) {
	u := fuzzUpgrader(t)
	u.o.MaxHeaderBytes = 8 << 10
	padding := "X-Padding: " + strings.Repeat("p", 7000) + "\r\n"
	req := []byte(strings.Replace(validRequest, "Host:", padding+"Host:", 1))
	u.searched = 0
	res, headLen := feed(u, req, 1)
	if res != upgraded || headLen != len(req) {
		t.Fatalf("outcome %d, header length %d; want upgraded, %d", res, headLen, len(req))
	}
	if max := int64(len(headEnd) * len(req)); u.searched > max {
		t.Fatalf("searched %d bytes for a %d-byte request fed a byte at a time, want at most %d", u.searched, len(req), max)
	}
}

// TestUpgradeResumeSplits: every way of cutting a request in two, or into
// pieces of every small size, gives the same outcome as the whole request,
// including a terminator split across pieces.
func TestUpgradeResumeSplits(t *testing.T) {
	u := fuzzUpgrader(t)
	for _, req := range []string{validRequest, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET /x HTTP/1.1\r\n\r\n\r\n"} {
		want, wantLen, _ := u.process([]byte(req), len(req), 0, nil)
		wantOut := statusLine(u.out)
		for size := 1; size <= 5; size++ {
			if res, n := feed(u, []byte(req), size); res != want || n != wantLen || statusLine(u.out) != wantOut {
				t.Fatalf("%q in %d-byte pieces: outcome %d, length %d; whole: %d, %d", req, size, res, n, want, wantLen)
			}
		}
		for cut := 1; cut < strings.Index(req, string(headEnd))+len(headEnd); cut++ {
			buf := []byte(req)
			if res, _, _ := u.process(buf[:cut], cut, 0, nil); res != needMore {
				t.Fatalf("%q cut at %d: outcome %d before the end", req, cut, res)
			}
			res, n, _ := u.process(buf, len(buf), resumeAt(buf[:cut]), nil)
			if res != want || n != wantLen {
				t.Fatalf("%q resumed at %d: outcome %d, length %d; whole: %d, %d", req, cut, res, n, want, wantLen)
			}
		}
	}
}

func statusLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	return string(line)
}

// TestAnswerHeaderInjection: header names and values from OnUpgrade or
// HTTPHandler cannot end a header line early: CR, LF and NUL in a value
// become spaces (as net/http does), and a name that is not a token is left
// out.
func TestAnswerHeaderInjection(t *testing.T) {
	u := fuzzUpgrader(t)
	u.answer(&Response{
		Status: http.StatusUnauthorized,
		Header: http.Header{
			"X-Reason":          {"bad token\r\nSet-Cookie: session=evil"},
			"X-Nul":             {"a\x00b\nc"},
			"X-Bad\r\nInjected": {"y"},
			"Bad Name":          {"z"},
			"":                  {"empty"},
		},
		Body: []byte("no\n"),
	})
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(u.out)), nil)
	if err != nil {
		t.Fatalf("unparsable answer %q: %v", u.out, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || string(body) != "no\n" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Fatal("no Connection: close")
	}
	want := http.Header{ // Connection is in resp.Close
		"Content-Length": {"3"},
		"X-Reason":       {"bad token  Set-Cookie: session=evil"},
		"X-Nul":          {"a b c"},
	}
	if len(resp.Header) != len(want) {
		t.Fatalf("headers %v, want %v", resp.Header, want)
	}
	for k, v := range want {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v[0] {
			t.Fatalf("header %s = %q, want %q (all: %v)", k, got, v, resp.Header)
		}
	}
}
