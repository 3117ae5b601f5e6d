package broadcast_test

import (
	"testing"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// TestHistoryPublishSeveralTopics pins what a connection subscribed to two
// topics with history gets from one publish to both, on one node: the
// message once, in the envelope of the first of the publish's topics it
// is subscribed to, at that topic's position. The message still takes a
// position on the other topic, so the connection sees that topic's next
// offset skip one, and a resume of that topic from before it replays it.
func TestHistoryPublishSeveralTopics(t *testing.T) {
	hub, addr, _ := resumeServer(t, broadcast.HistoryPolicy{Size: 10}, 1)
	c := mustDial(t, addr, "/", dialOptions{})
	recA, err := subscribeSince(c, "h.a", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	recB, err := subscribeSince(c, "h.b", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	n, pos := hub.PublishPositions(broadcast.Message{Topics: []string{"h.b", "h.a"}, Op: codec.OpText, Payload: []byte("both")})
	want := []broadcast.TopicPosition{
		{Topic: "h.b", Position: broadcast.Position{Offset: 1, Epoch: recB.Position.Epoch}},
		{Topic: "h.a", Position: broadcast.Position{Offset: 1, Epoch: recA.Position.Epoch}},
	}
	if n != 2 || len(pos) != 2 || pos[0] != want[0] || pos[1] != want[1] {
		t.Fatalf("PublishPositions: %d, %+v; want 2 subscriptions at %+v", n, pos, want)
	}
	publishN(hub, "h.a", 2, 1) // "m2", offset 2 of h.a
	for _, want := range []string{
		"1 " + recB.Position.Epoch + " h.b both", // once, as h.b, the first topic of the publish
		"2 " + recA.Position.Epoch + " h.a m2",   // h.a's offset 1 never came on h.a
	} {
		if _, p, err := c.next(); err != nil || string(p) != want {
			t.Fatalf("got %q, %v; want %q", p, err, want)
		}
	}
	// Resuming h.a from before the publish to both gets it again, as h.a.
	c2 := mustDial(t, addr, "/", dialOptions{})
	rec, err := subscribeSince(c2, "h.a", &recA.Position, true)
	if err != nil || !rec.Recovered || rec.Replayed != 2 {
		t.Fatalf("resume h.a from %+v: %+v, %v; want recovered, 2 replayed", recA.Position, rec, err)
	}
	for _, want := range []string{"1 " + recA.Position.Epoch + " h.a both", "2 " + recA.Position.Epoch + " h.a m2"} {
		if _, p, err := c2.next(); err != nil || string(p) != want {
			t.Fatalf("replay %q, %v; want %q", p, err, want)
		}
	}
}
