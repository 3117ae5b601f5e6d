package loadgen

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// Envelope is a frame wsd sends a push client with ?format=json: an ack or
// event (Op set) or a publication with its position.
type Envelope struct {
	Op        string `json:"op"`
	Topic     string `json:"topic"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered"`
	Data      string `json:"data"`
}

// Position is a topic's stream position.
type Position struct {
	Offset uint64
	Epoch  string
}

// HistoryURL is the URL of a push client on base (ws://host:port/path)
// that subscribes to topic with ?format=json, resuming after since when
// since is not nil (?since=TOPIC:OFFSET:EPOCH).
func HistoryURL(base, topic string, since *Position) string {
	q := url.Values{"format": {"json"}, "topics": {topic}}
	if since != nil {
		q.Set("since", topic+":"+strconv.FormatUint(since.Offset, 10)+":"+since.Epoch)
	}
	return base + "?" + q.Encode()
}

// HistoryDial opens a push client connection to u and reads its
// "subscribed" ack for topic, which it returns (its position, and whether
// wsd recovered what the client missed).
func HistoryDial(u, topic string, limit time.Duration) (*websocket.Conn, Envelope, error) {
	d := websocket.Dialer{HandshakeTimeout: limit}
	c, _, err := d.Dial(u, nil)
	if err != nil {
		return nil, Envelope{}, err
	}
	_ = c.SetReadDeadline(time.Now().Add(limit))
	for {
		e, err := readEnvelope(c)
		if err != nil {
			c.Close()
			return nil, Envelope{}, err
		}
		if e.Op == "subscribed" && e.Topic == topic {
			return c, e, nil
		}
		if e.Op == "error" {
			c.Close()
			return nil, Envelope{}, fmt.Errorf("wsd refused the subscription: %+v", e)
		}
	}
}

func readEnvelope(c *websocket.Conn) (Envelope, error) {
	_, b, err := c.ReadMessage()
	if err != nil {
		return Envelope{}, err
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("not an envelope: %q", b)
	}
	return e, nil
}

// ReadSequence reads publications of topic on c until it has every offset
// from first to last once, in order, within limit: a gap, a duplicate, a
// publication of another epoch or another topic is an error.
func ReadSequence(c *websocket.Conn, topic, epoch string, first, last uint64, limit time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	for next := first; next <= last; {
		e, err := readEnvelope(c)
		if err != nil {
			return fmt.Errorf("after offset %d of %d..%d: %w", next-1, first, last, err)
		}
		switch {
		case e.Op != "":
			continue
		case e.Topic != topic || e.Epoch != epoch:
			return fmt.Errorf("publication of %s epoch %q, want %s epoch %q", e.Topic, e.Epoch, topic, epoch)
		case e.Offset < next:
			return fmt.Errorf("offset %d again (duplicate), want %d", e.Offset, next)
		case e.Offset > next:
			return fmt.Errorf("offset %d, want %d (%d missing)", e.Offset, next, e.Offset-next)
		}
		next++
	}
	return nil
}
