package main

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
)

// TestAuthBcryptOffLoop: bcrypt runs off the event loop. One event loop
// serves an authenticated connection while four basic-auth logins with
// wrong passwords each cost a bcrypt check at cost 12 (about 240 ms on an
// idle core; cost 10 under the race detector, which slows it about ten
// times), one at a time on one worker: the connection's whoami round
// trips stay far below one bcrypt check, which each would wait for if the
// checks ran on the loop.
func TestAuthBcryptOffLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("bcrypt at cost 12 takes seconds")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The checks wait in line for one worker: on a loaded machine, under
	// the race detector, the last can take tens of seconds, and the upgrade
	// deadline and the clients' must not end it first.
	td := startWSD(t, "-mode", "push", "-event-loops", "1", "-auth", "required", "-auth-basic-file", file, "-auth-check-workers", "1", "-handshake-timeout", "3m")
	basic := func(pass string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+pass))}}
	}
	c := td.dialHeader(t, "/", basic("right")) // one bcrypt check; then cached
	const logins = 4
	start := time.Now()
	var wg sync.WaitGroup
	statuses := make([]int, logins)
	for i := range logins {
		wg.Go(func() {
			d := websocket.Dialer{HandshakeTimeout: 3 * time.Minute}
			_, resp, err := d.Dial("ws://"+td.addr+"/", basic("wrong"+string(rune('a'+i))))
			if resp != nil {
				statuses[i] = resp.StatusCode
			} else {
				t.Errorf("login %d: %v", i, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var rtts []time.Duration
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		t0 := time.Now()
		sendJSON(t, c, map[string]string{"op": "whoami"})
		if m := readMap(t, c); m["op"] != "whoami" {
			t.Fatalf("whoami: %v", m)
		}
		rtts = append(rtts, time.Since(t0))
		time.Sleep(5 * time.Millisecond) // pace the probes; the measure is their round trip
	}
	took := time.Since(start)
	for i, s := range statuses {
		if s != http.StatusUnauthorized {
			t.Fatalf("login %d: %d, want 401", i, s)
		}
	}
	var worst time.Duration
	for _, d := range rtts {
		worst = max(worst, d)
	}
	t.Logf("%d logins with bcrypt cost %d took %v on one worker; %d whoami round trips meanwhile, the slowest %v", logins, bcryptCost, took, len(rtts), worst)
	// The checks ran: four of them, one at a time, take several hundred ms.
	if took < 4*100*time.Millisecond {
		t.Fatalf("the logins took %v: the bcrypt checks did not run", took)
	}
	// On the loop a round trip would wait for a whole check; off it, a few
	// ms. The bound, half a check as measured here, grows with the load of
	// the machine as the checks do.
	if perCheck := took / logins; worst > perCheck/2 || len(rtts) < 10 {
		t.Fatalf("slowest whoami round trip %v over %d probes, a bcrypt check %v: the loop was held", worst, len(rtts), perCheck)
	}
}
