package broadcast_test

import (
	"fmt"
	"log"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
	"github.com/wsdproject/wsd/engine"
)

// feed subscribes each connection to "news" when it asks, from the
// position it names ("since -" for none, "since 7 EPOCH" to resume after
// offset 7), and tells it the outcome before any message.
type feed struct {
	engine.NopHandler
	hub *broadcast.Hub
}

func (f feed) OnMessage(c *engine.Conn, _ codec.OpCode, p []byte) {
	var since *broadcast.Position
	if off, epoch, ok := strings.Cut(strings.TrimPrefix(string(p), "since "), " "); ok {
		n, _ := strconv.ParseUint(off, 10, 64)
		since = &broadcast.Position{Offset: n, Epoch: epoch}
	}
	rec, err := f.hub.SubscribeSince(c, "news", since)
	if err != nil {
		c.CloseNow(1011, "")
		return
	}
	_ = c.Write(codec.OpText, fmt.Appendf(nil, "recovered=%t offset=%d", rec.Recovered, rec.Position.Offset))
}

// A topic with history: the last 100 messages of "news" are kept. A client
// that saw up to message 2 reconnects while 3 and 4 are published and gets
// them back before the live message 5; one from a position history does
// not know gets recovered=false and only live messages.
func ExampleHub_SubscribeSince() {
	hub := broadcast.New(broadcast.Options{
		History: func(topic string) broadcast.HistoryPolicy {
			if topic == "news" {
				return broadcast.HistoryPolicy{Size: 100}
			}
			return broadcast.HistoryPolicy{} // no history, at no cost
		},
	})
	s := &feed{hub: hub}
	addr, shutdown := serve(hub.Handler(s))
	defer shutdown()

	for i := 1; i <= 4; i++ {
		hub.Publish("news", codec.OpText, fmt.Appendf(nil, "news %d", i))
	}
	_, pos, _ := hub.History("news", 0, 0) // offset 4 and the epoch
	back := dial(addr)
	defer back.Close()
	say(back, "since 2 "+pos.Epoch)
	lost := dial(addr)
	defer lost.Close()
	say(lost, "since 2 another-epoch")
	fmt.Println("back:", receive(back))
	fmt.Println("lost:", receive(lost))
	hub.Publish("news", codec.OpText, []byte("news 5"))
	for range 3 {
		fmt.Println("back:", receive(back))
	}
	fmt.Println("lost:", receive(lost))
	// Output:
	// back: recovered=true offset=4
	// lost: recovered=false offset=4
	// back: news 3
	// back: news 4
	// back: news 5
	// lost: news 5
}

// dial connects a client.
func dial(addr string) *websocket.Conn {
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		log.Fatal(err)
	}
	return c
}
