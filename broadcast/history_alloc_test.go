package broadcast_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/broadcast"
)

// retainFunc is where a topic with history copies each message it keeps.
const retainFunc = "github.com/wsdproject/wsd/broadcast.(*history).add"

// TestHistoryFanoutAllocs guards the publish path with Options.History
// set: a topic without history costs what it costs with no History at all
// (publishAllocs per publish besides waking the loop), and a topic with
// history one allocation more per publish, the copy of the message it
// keeps, whatever the number of subscribers (none per subscriber).
func TestHistoryFanoutAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	opts := broadcast.Options{History: func(topic string) broadcast.HistoryPolicy {
		if strings.HasPrefix(topic, "h.") {
			return broadcast.HistoryPolicy{Size: 100}
		}
		return broadcast.HistoryPolicy{}
	}}
	for _, tc := range []struct {
		topic  string
		retain uint64 // allocations per publish keeping the message
	}{
		{topic: "feed", retain: 0},
		{topic: "h.feed", retain: 1},
	} {
		var others [2]uint64
		for i, n := range []int{1, 200} {
			t.Run(fmt.Sprintf("topic=%s/subs=%d", tc.topic, n), func(t *testing.T) {
				a := topicFanoutAllocs(t, opts, tc.topic, n)
				wake, kept := a.Under(wakeFunc), a.Under(retainFunc)
				t.Logf("%v to %d subscribers; %d of them waking the loop, %d keeping the message", a, n, wake, kept)
				runs := uint64(a.Runs)
				if kept != tc.retain*runs {
					t.Errorf("%d allocations keeping %d messages, want %d per publish:\n%s", kept, runs, tc.retain, a.Where())
				}
				if other := a.Total - wake - kept; other != publishAllocs*runs {
					t.Errorf("%d allocations in %d publishes besides waking the loop and keeping the message, want %d per publish:\n%s",
						other, runs, publishAllocs, a.Where())
				}
				others[i] = a.Total - wake
			})
		}
		if !t.Failed() && others[0] != others[1] {
			t.Errorf("topic %s: %d allocations publishing to 200 subscribers, %d to 1: the fan-out allocates per subscriber", tc.topic, others[1], others[0])
		}
	}
}
