package loadgen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// testServer echoes in echo mode; in broadcast mode it sends n numbered
// messages to every client once all of them are connected.
func testServer(t *testing.T, broadcast bool, clients, n int) string {
	if !broadcast {
		n = 0
	}
	return serveTest(t, websocket.Upgrader{}, clients, n, func(seq uint64) *websocket.PreparedMessage {
		pm, _ := websocket.NewPreparedMessage(websocket.BinaryMessage, BroadcastPayload(nil, seq, 32))
		return pm
	})
}

// serveTest serves up's connections: with n 0 it echoes; otherwise it
// sends n messages, msg(1) to msg(n), to every client once clients are
// connected.
func serveTest(t *testing.T, up websocket.Upgrader, clients, n int, msg func(seq uint64) *websocket.PreparedMessage) string {
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		if n == 0 {
			go func() {
				for {
					op, p, err := c.ReadMessage()
					if err != nil || c.WriteMessage(op, p) != nil {
						return
					}
				}
			}()
			return
		}
		mu.Lock()
		conns = append(conns, c)
		all := len(conns) == clients
		mu.Unlock()
		if all {
			go func() {
				time.Sleep(200 * time.Millisecond) // the workers say go meanwhile
				for seq := 1; seq <= n; seq++ {
					pm := msg(uint64(seq))
					mu.Lock()
					for _, c := range conns {
						_ = c.WritePreparedMessage(pm)
					}
					mu.Unlock()
				}
			}()
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// runJob runs RunWorker over pipes, as wsbench does with a child process.
func runJob(t *testing.T, job Job) Result {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- RunWorker(inR, outW); outW.Close() }()
	b, _ := json.Marshal(job)
	go func() { _, _ = inW.Write(append(b, '\n')) }()
	sc := bufio.NewScanner(outR)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"ready":true`) {
		t.Fatalf("no ready line: %q", sc.Text())
	}
	go func() { _, _ = inW.Write([]byte("go\n")) }()
	if !sc.Scan() {
		t.Fatal("no result line")
	}
	var r Result
	if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWorkerEcho(t *testing.T) {
	addr := testServer(t, false, 0, 0)
	for _, depth := range []int{1, 8} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			r := runJob(t, Job{Scenario: "echo", Addr: addr, Path: "/", Conns: 20, DialConcurrency: 4, Size: 100, Depth: depth, Duration: 300 * time.Millisecond})
			if r.Connected != 20 || r.Messages == 0 || r.BadSize != 0 || r.HistN != r.Messages {
				t.Fatalf("result %+v", r)
			}
			// Every burst came back whole before the worker stopped.
			if r.Messages%uint64(depth) != 0 {
				t.Fatalf("%d echoes: not whole bursts of %d", r.Messages, depth)
			}
		})
	}
}

func TestWorkerBroadcast(t *testing.T) {
	const clients, n = 10, 50
	addr := testServer(t, true, clients, n)
	r := runJob(t, Job{Scenario: "broadcast", Addr: addr, Path: "/", Conns: clients, DialConcurrency: 2, Duration: 10 * time.Second, Expect: n})
	if r.Connected != clients || r.Messages != clients*n || r.Lost != 0 || r.Reordered != 0 {
		t.Fatalf("result %+v", r)
	}
	if r.RunNs > int64(5*time.Second) {
		t.Fatalf("worker waited %v: it should stop once every message arrived", time.Duration(r.RunNs))
	}
}
