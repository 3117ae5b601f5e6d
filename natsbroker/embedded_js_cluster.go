package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// History on embedded servers joined by routes. With Options.History and
// Listen, each embedded server runs JetStream clustered: its ServerName is
// the node id and its cluster the ClusterName, so the servers elect a
// JetStream meta leader among themselves, and the history stream is
// replicated on min(3, len(Routes)) of them (historyReplicas): with three
// nodes or more, history survives the death of one. The history code
// (history.go, history_publish.go) is the same as with URLs.
//
// The stream can be created only once the cluster has a meta leader, which
// takes a quorum of the servers named by Routes and an election:
// startServer waits for it (waitMetaLeader), checking with backoff.

// maxHistoryReplicas is the most copies of the stream: NATS allows at
// most 5; 3 survive one node's death at the cost of two copies.
const maxHistoryReplicas = 3

// historyReplicas is the stream's Replicas: 0 (NATS's default of one)
// with URLs, whose deployment's operator chooses, and without Listen;
// with Listen, one per node of Routes up to maxHistoryReplicas.
func (b *Broker) historyReplicas() int {
	if len(b.opts.URLs) > 0 || b.opts.Listen == "" {
		return 0
	}
	return min(maxHistoryReplicas, max(len(b.opts.Routes), 1))
}

// storeDir is the embedded server's JetStream directory: Options.HistoryDir,
// or one named after the node under the temporary directory, so that the
// nodes of one host do not share their JetStream state.
func storeDir(o *Options, node string) string {
	if o.HistoryDir != "" || o.History == nil {
		return o.HistoryDir
	}
	return filepath.Join(os.TempDir(), "wsd-nats", node)
}

// DefaultJetStreamWait bounds how long New waits for the JetStream of
// embedded servers joined by routes to elect a meta leader.
const DefaultJetStreamWait = 2 * time.Minute

// ErrAborted is New's error when Options.Abort was closed while it waited.
var ErrAborted = errors.New("natsbroker: start aborted while waiting for the JetStream of the embedded cluster")

// pause waits d, or until abort is closed: false then.
func pause(abort <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-abort:
		return false
	case <-t.C:
		return true
	}
}

// waitMetaLeader waits, with History on embedded servers joined by routes,
// until the server's JetStream knows its meta leader, checking with backoff
// up to DefaultJetStreamWait. Called by startServer, so New creates the
// stream (startHistory) only once it can.
func waitMetaLeader(s *server.Server, o *Options, log *zap.Logger) error {
	if o.History == nil || o.Listen == "" {
		return nil
	}
	deadline := time.Now().Add(DefaultJetStreamWait)
	wait := 20 * time.Millisecond
	for attempt := 1; !s.JetStreamIsCurrent(); attempt++ {
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("natsbroker: the JetStream of the embedded cluster has no meta leader after %v: a quorum of the nodes in Routes must run", DefaultJetStreamWait)
		}
		if attempt%20 == 0 {
			log.Info("natsbroker: waiting for the JetStream meta leader of the embedded cluster", zap.Int("attempt", attempt))
		}
		if !pause(o.Abort, wait) { // backoff between checks of the server's state
			return ErrAborted
		}
		wait = min(2*wait, time.Second)
	}
	return nil
}

// firstStream creates the stream for startHistory. Servers joined by
// routes may take a few seconds more once they have a meta leader (the
// stream's own replicas elect a leader): it tries again, with backoff, up
// to DefaultJetStreamWait.
func (b *Broker) firstStream() (jetstream.Stream, error) {
	deadline := time.Now().Add(DefaultJetStreamWait)
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.opts.RequestTimeout)
		s, err := b.createStream(ctx)
		cancel()
		if err == nil || b.srv == nil || b.opts.Listen == "" || time.Now().Add(wait).After(deadline) {
			return s, err
		}
		b.log.Info("natsbroker: creating the JetStream stream of the embedded cluster, again", zap.Int("attempt", attempt), zap.Error(err))
		if !pause(b.opts.Abort, wait) { // backoff between attempts
			return nil, ErrAborted
		}
		wait = min(2*wait, 2*time.Second)
	}
}
