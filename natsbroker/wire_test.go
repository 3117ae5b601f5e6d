package natsbroker

import (
	"bytes"
	"slices"
	"testing"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

func TestWirePublicationRoundTrip(t *testing.T) {
	for _, m := range []broadcast.BrokerMessage{
		{Topics: []string{"news"}, Op: codec.OpText, Payload: []byte("hello"), Origin: "ws1"},
		{Topics: []string{"a", "b.c", ""}, Op: codec.OpBinary, Payload: []byte{0, 1, 2}, Origin: "node.with.dots", Exclude: 1 << 40},
		{Topics: []string{"x"}, Op: codec.OpText, Payload: nil, Origin: ""},
	} {
		body := appendPublication(nil, 0x0102030405060708, 77, &m)
		body = append(body, m.Payload...)
		var w wireMsg
		if !decodePublication(body, &w) {
			t.Fatalf("%+v: not decoded", m)
		}
		if w.instance != 0x0102030405060708 || w.seq != 77 || w.op != m.Op || w.exclude != m.Exclude ||
			w.origin != m.Origin || !slices.Equal(w.topics, m.Topics) || !bytes.Equal(w.payload, m.Payload) {
			t.Fatalf("%+v: decoded as %+v", m, w)
		}
		// Every strict prefix of the header is refused.
		hdr := len(body) - len(m.Payload)
		for n := range hdr {
			if decodePublication(body[:n], &w) {
				t.Fatalf("%+v: %d of %d header bytes decoded", m, n, hdr)
			}
		}
	}
}

func TestWireRefusesOtherOpcodes(t *testing.T) {
	for _, op := range []codec.OpCode{codec.OpContinuation, codec.OpClose, codec.OpPing, codec.OpPong, 3} {
		body := appendPublication(nil, 1, 1, &broadcast.BrokerMessage{Topics: []string{"t"}, Op: op})
		var w wireMsg
		if decodePublication(body, &w) {
			t.Errorf("opcode %v decoded", op)
		}
	}
	body := appendPublication(nil, 1, 1, &broadcast.BrokerMessage{Op: codec.OpText}) // no topics
	var w wireMsg
	if decodePublication(body, &w) {
		t.Error("a publication without topics decoded")
	}
}

func TestWireCountsRoundTrip(t *testing.T) {
	rooms := []broadcast.TopicInfo{{Name: "lobby", Subscribers: 3}, {Name: "", Subscribers: 0}, {Name: "é", Subscribers: 1 << 20}}
	hb, ok := decodeHeartbeat(appendHeartbeat(nil, flagLeaving, 99, 2000, "ws1", rooms))
	if !ok || hb.flags != flagLeaving || hb.instance != 99 || hb.interval != 2000 || hb.node != "ws1" || !slices.Equal(hb.counts, rooms) {
		t.Fatalf("heartbeat decoded as %+v, %v", hb, ok)
	}
	a, ok := decodeTopicAnswer(appendTopicAnswer(nil, true, "ws2", rooms))
	if !ok || a.flags != flagLast || a.node != "ws2" || !slices.Equal(a.counts, rooms) {
		t.Fatalf("answer decoded as %+v, %v", a, ok)
	}
	if _, ok := decodeTopicAnswer(append(appendTopicAnswer(nil, true, "ws2", rooms), 0)); ok {
		t.Fatal("an answer with a trailing byte decoded")
	}
}

// FuzzWireDecode: no input makes a decoder panic or believe a count it
// has no bytes for.
func FuzzWireDecode(f *testing.F) {
	f.Add(appendPublication(nil, 1, 2, &broadcast.BrokerMessage{Topics: []string{"a", "b"}, Op: codec.OpText, Origin: "n"}))
	f.Add(appendHeartbeat(nil, 0, 1, 2000, "n", []broadcast.TopicInfo{{Name: "r", Subscribers: 2}}))
	f.Add(appendTopicAnswer(nil, true, "n", []broadcast.TopicInfo{{Name: "t", Subscribers: 1}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w wireMsg
		if decodePublication(data, &w) {
			if len(w.topics) == 0 || len(w.topics) > len(data) {
				t.Fatalf("%d topics from %d bytes", len(w.topics), len(data))
			}
		}
		if hb, ok := decodeHeartbeat(data); ok && len(hb.counts) > len(data) {
			t.Fatalf("%d rooms from %d bytes", len(hb.counts), len(data))
		}
		decodeTopicAnswer(data)
	})
}
