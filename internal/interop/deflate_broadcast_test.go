package interop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	gorilla "github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// metricValue returns the value of the metric name (without labels) that
// the daemon's admin listener at adminAddr exports, or fails.
func metricValue(t *testing.T, adminAddr, name string) string {
	t.Helper()
	status, body := newAdminClient(adminAddr, "").do(t, "GET", "/metrics", "", false)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", status)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("GET /metrics has no %s", name)
	return ""
}

// TestDeflateBroadcast sends 1 KiB JSON documents to 5 subscribers that
// negotiated permessage-deflate (gorilla with EnableCompression) and 5
// that did not, published through the admin API (push) or sent by one of
// the subscribers (chat, where the sender's compressed message is inflated
// by the daemon first). Each document is compressed once
// (wsd_published_compressed_total) at the daemon's level: the deflate
// subscribers get it compressed, byte for byte codec.Compress's output,
// the others plain. It logs the bytes on the wire of both.
func TestDeflateBroadcast(t *testing.T) {
	t.Parallel()
	const subscribers, docs = 10, 5
	for _, tc := range []struct {
		name, mode  string
		args        []string
		level       int
		path, topic string
	}{
		{"push", "push", nil, 1, "/?topics=news", "news"},
		{"push-level-9", "push", []string{"-compression-level", "9"}, 9, "/?topics=news", "news"},
		{"chat", "chat", nil, 1, "/chat/deflate", "chat/deflate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			admin := wstest.FreeAddr(t)
			d := wstest.StartDaemon(t, append([]string{"-mode", tc.mode, "-admin-addr", admin}, tc.args...)...)
			type sub struct {
				c       *gorilla.Conn
				rc      *recordConn
				deflate bool
			}
			var subs []sub
			for i := range subscribers {
				rec := &recorder{}
				dialer := gorillaDialer(rec.DialContext)
				dialer.EnableCompression = i%2 == 0
				c, resp := dialGorilla(t, dialer, "ws://"+d.Addr+tc.path, nil)
				s := sub{c, rec.only(t), dialer.EnableCompression}
				want := ""
				if s.deflate {
					want = answerNoTakeover
				}
				checkAnswer(t, resp.Header.Get("Sec-WebSocket-Extensions"), want, s.rc.Received())
				subs = append(subs, s)
			}
			waitSubscribers(t, admin, tc.topic, subscribers)

			var sent [][]byte
			payload := 0
			for seq := range docs {
				doc := jsonDoc(seq, 1024)
				sent = append(sent, doc)
				payload += len(doc)
				if tc.mode == "push" {
					data, _ := json.Marshal(string(doc))
					newAdminClient(admin, "").publish(t, `{"topic":"news","data":`+string(data)+`}`, subscribers, "news")
				} else {
					gorillaWrite(t, subs[0].c, gorilla.TextMessage, doc) // a deflate subscriber: gorilla compresses it
				}
				for i, s := range subs {
					if typ, got := gorillaRead(t, s.c); typ != gorilla.TextMessage || !bytes.Equal(got, doc) {
						t.Fatalf("subscriber %d: got type %d, %d bytes, want the %d-byte document", i, typ, len(got), len(doc))
					}
				}
			}

			var zBytes, plainBytes int
			for i, s := range subs {
				msgs, err := ReadMessages(s.rc.Received(), false)
				if err != nil || len(msgs) != docs {
					t.Fatalf("subscriber %d: %d messages on the wire (%v), want %d", i, len(msgs), err, docs)
				}
				for j, m := range msgs {
					switch {
					case m.Compressed != s.deflate:
						t.Errorf("subscriber %d (deflate %v), document %d: compressed %v", i, s.deflate, j, m.Compressed)
					case !bytes.Equal(m.Payload, sent[j]):
						t.Errorf("subscriber %d, document %d: it inflates to something else", i, j)
					case m.Compressed && !bytes.Equal(m.Raw, codec.Compress(nil, sent[j], tc.level)):
						t.Errorf("subscriber %d, document %d: not codec.Compress's output at level %d", i, j, tc.level)
					}
					if i == 0 {
						zBytes += m.Bytes
					} else if i == 1 {
						plainBytes += m.Bytes
					}
				}
			}
			if tc.mode == "chat" {
				ups, err := ReadMessages(subs[0].rc.Written(), false)
				if err != nil || len(ups) != docs || !ups[0].Compressed {
					t.Fatalf("the sender's messages on the wire: %d (%v), the first compressed: %v; want %d compressed", len(ups), err, len(ups) > 0 && ups[0].Compressed, docs)
				}
			}
			if got := metricValue(t, admin, "wsd_published_compressed_total"); got != fmt.Sprint(docs) {
				t.Errorf("wsd_published_compressed_total %s after %d documents to %d subscribers, want %d", got, docs, subscribers, docs)
			}
			if got := metricValue(t, admin, "wsd_published_total"); got != fmt.Sprint(docs) {
				t.Errorf("wsd_published_total %s, want %d", got, docs)
			}
			t.Logf("%d JSON documents of about 1 KiB (%d bytes in all), level %d: %d bytes on the wire compressed, %d plain (%.1f%%)",
				docs, payload, tc.level, zBytes, plainBytes, 100*float64(zBytes)/float64(plainBytes))
		})
	}
}
