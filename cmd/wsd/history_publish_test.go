package main

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
)

// publishPositionsReply is the answer of POST /api/publish with positions.
type publishPositionsReply struct {
	publishReply
	Positions []broadcast.TopicPosition `json:"positions"`
}

// TestHistoryPublishPosition: the ack of a client's publish to a topic
// with history, and the answer of POST /api/publish, give the position the
// message took (the same one its subscribers see in the envelope), so
// that a publisher can resume from its own message; a topic without
// history gets no position.
func TestHistoryPublishPosition(t *testing.T) {
	td := startWSD(t, "-mode", "push", "-history", "news.*=10/10m", "-client-publish", "*")
	live := td.dialWS(t, "/?format=json&topics=news.eu")
	epoch := expectSubscribed(t, "live", live, "news.eu", nil, 0).Epoch

	pub := td.dialWS(t, "/")
	send := func(req string) pushMsg {
		t.Helper()
		if err := pub.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		return readPush(t, "publisher", pub)
	}
	if m := send(`{"op":"publish","topic":"news.eu","data":"a"}`); m.Op != "published" || m.Topic != "news.eu" || m.Offset == nil || *m.Offset != 1 || m.Epoch != epoch {
		t.Fatalf("ack %+v, want published at offset 1 of %s", m, epoch)
	}
	expectEnvelope(t, "live", live, "news.eu", 1, epoch, "a")
	if m := send(`{"op":"publish","topic":"news.eu","data_base64":"AAH+/w=="}`); m.Op != "published" || m.Offset == nil || *m.Offset != 2 || m.Epoch != epoch {
		t.Fatalf("ack %+v, want published at offset 2 of %s", m, epoch)
	}
	if m := readPush(t, "live", live); m.Offset == nil || *m.Offset != 2 || m.DataBase64 == nil {
		t.Fatalf("live: %+v, want the binary message at offset 2", m)
	}
	if m := send(`{"op":"publish","topic":"plain","data":"p"}`); m.Op != "published" || m.Topic != "plain" || m.Offset != nil || m.Epoch != "" {
		t.Fatalf("ack %+v, want published with no position", m)
	}

	// The publish API: a position for each topic with history, in the
	// order of the request, none for the others.
	r := td.publish(t, `{"topics":["news.us","plain","news.eu"],"data":"b"}`)
	var res publishPositionsReply
	decodeStrict(t, r, &res)
	usEpoch := ""
	if len(res.Positions) == 2 {
		usEpoch = res.Positions[0].Epoch
	}
	want := []broadcast.TopicPosition{
		{Topic: "news.us", Position: broadcast.Position{Offset: 1, Epoch: usEpoch}},
		{Topic: "news.eu", Position: broadcast.Position{Offset: 3, Epoch: epoch}},
	}
	if usEpoch == "" || !reflect.DeepEqual(res.Positions, want) || res.Recipients != 1 {
		t.Fatalf("answer %s, want positions %+v and 1 recipient", r.body, want)
	}
	expectEnvelope(t, "live", live, "news.eu", 3, epoch, "b")
	r = td.publish(t, `{"topic":"plain","data":"c"}`)
	var plain publishPositionsReply
	if decodeStrict(t, r, &plain); plain.Positions != nil {
		t.Fatalf("answer %s, want no positions", r.body)
	}

	// The publisher resumes from its own first message: what followed it
	// comes back, recovered.
	yes := true
	sub := send(fmt.Sprintf(`{"op":"subscribe","topic":"news.eu","since":{"offset":1,"epoch":%q}}`, epoch))
	if sub.Op != "subscribed" || sub.Recovered == nil || *sub.Recovered != yes || sub.Offset == nil || *sub.Offset != 3 {
		t.Fatalf("resume: %+v, want recovered at offset 3", sub)
	}
	for _, want := range []string{"\x00\x01\xfe\xff", "b"} {
		_ = pub.SetReadDeadline(time.Now().Add(adminTimeout))
		if _, p, err := pub.ReadMessage(); err != nil || string(p) != want {
			t.Fatalf("replay %q %v, want %q", p, err, want)
		}
	}
}
