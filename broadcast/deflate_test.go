package broadcast_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/internal/wstest"
)

// dialDeflate connects a raw client to path that offers permessage-deflate.
func dialDeflate(t *testing.T, addr, path string) *wstest.Client {
	t.Helper()
	cl := wstest.Dial(t, addr)
	key := wstest.NewKey()
	hs := wstest.WithHeader(wstest.UpgradeHeaders(addr, key), "Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
	cl.Write(wstest.BuildRequest(http.MethodGet, path, hs))
	cl.ExpectUpgrade(key)
	return cl
}

// TestPublishCompressedOnce: a publish to subscribers of whom some
// negotiated permessage-deflate is compressed once, whatever the number of
// subscribers and loops; they get the compressed frame (RSV1) and the
// others the plain one, both with the same message.
func TestPublishCompressedOnce(t *testing.T) {
	hub, h, addr := startHub(t, broadcast.Options{}, 2)
	var zipped, plain []*wstest.Client
	for range 4 {
		zipped = append(zipped, dialDeflate(t, addr, "/news"))
		nextOpened(t, h)
		cl := wstest.Dial(t, addr)
		cl.Handshake("/news")
		nextOpened(t, h)
		plain = append(plain, cl)
	}
	msg := []byte(strings.Repeat(`{"symbol":"WSD","price":101.5,"volume":12000}`, 25))
	short := []byte(`{"tiny":1}`) // under the threshold: plain for everyone
	const n = 20
	for range n {
		hub.Publish("news", codec.OpText, msg)
		hub.Publish("news", codec.OpText, short)
	}
	var f codec.Inflater
	for _, cl := range zipped {
		for range n {
			fr, err := cl.ReadFrame()
			if err != nil || fr.Rsv != wstest.Rsv1 || len(fr.Payload) >= len(msg) {
				t.Fatalf("deflate subscriber: %v, %v; want a compressed frame", fr, err)
			}
			out, err := f.Inflate(nil, fr.Payload, 0, nil)
			if err != nil || !bytes.Equal(*out, msg) {
				t.Fatalf("inflated %d bytes, %v", len(*out), err)
			}
			cl.ExpectText(string(short))
		}
	}
	for _, cl := range plain {
		for range n {
			cl.ExpectText(string(msg))
			cl.ExpectText(string(short))
		}
	}
	if c := hub.Stats().Compressed; c != n {
		t.Fatalf("%d publishes compressed, want %d (once each)", c, n)
	}
}
