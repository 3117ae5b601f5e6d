package loadgen

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestReadSequence: a server that sends the offsets given; ReadSequence
// accepts exactly the complete, ordered run.
func TestReadSequence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offsets []uint64
		want    string
	}{
		{"complete", []uint64{4, 5, 6}, ""},
		{"gap", []uint64{4, 6}, "offset 6, want 5 (1 missing)"},
		{"duplicate", []uint64{4, 4, 5, 6}, "offset 4 again"},
		{"short", []uint64{4, 5}, "after offset 5 of 4..6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"subscribed","topic":"h.t","recovered":true,"offset":6,"epoch":"e1"}`))
				for _, o := range tc.offsets {
					_ = c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"topic":"h.t","offset":%d,"epoch":"e1","data":"x"}`, o))
				}
				_, _, _ = c.ReadMessage() // until the client closes
			}))
			defer srv.Close()
			u := HistoryURL("ws"+strings.TrimPrefix(srv.URL, "http"), "h.t", &Position{Offset: 3, Epoch: "e1"})
			if !strings.Contains(u, "since=h.t%3A3%3Ae1") {
				t.Errorf("URL %s", u)
			}
			c, ack, err := HistoryDial(u, "h.t", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if ack.Recovered == nil || !*ack.Recovered || ack.Offset != 6 {
				t.Errorf("ack %+v", ack)
			}
			err = ReadSequence(c, "h.t", "e1", 4, 6, time.Second)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
