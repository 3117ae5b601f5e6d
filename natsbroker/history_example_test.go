package natsbroker_test

import (
	"log"
	"strings"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/natsbroker"
)

// History on JetStream: the topics under "news." keep their last 100
// messages in a stream of the NATS deployment (which must run JetStream),
// so that a client resumes on any node from the position it last saw.
// The hub takes the same policy: its history is a cache of the stream's.
func ExampleOptions_history() {
	policy := func(topic string) broadcast.HistoryPolicy {
		if strings.HasPrefix(topic, "news.") {
			return broadcast.HistoryPolicy{Size: 100}
		}
		return broadcast.HistoryPolicy{}
	}
	b, err := natsbroker.New(natsbroker.Options{
		URLs:          []string{"nats://127.0.0.1:4222"},
		History:       policy,
		HistoryLimits: broadcast.HistoryPolicy{Size: 100},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	hub := broadcast.New(broadcast.Options{Broker: b, History: policy})
	// serve hub.Handler(h); h resumes clients with hub.SubscribeSinceAsync
	_ = hub
}
