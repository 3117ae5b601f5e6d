package natsbroker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Slow consumers: publications NATS dropped on their way to this node
// because the node did not take them in fast enough. NATS core has no flow
// control across servers: a publisher that outruns a node, for long enough,
// loses messages at one of two places.
//
//   - The NATS server: it queues what it has not yet written to the node's
//     connection, and past its max_pending (Options.MaxPending for the
//     embedded server) or when a write takes longer than its write
//     deadline, it closes the connection as a slow consumer. nats.go sees
//     only the connection end (io.EOF) and reconnects; everything queued is
//     lost. The embedded server counts its slow consumers, so the node
//     tells this apart from another loss of the connection; with URLs it
//     cannot (the server sends no error first), and the NATS server's own
//     slow_consumers counter (its /varz) is the one to watch.
//   - nats.go: the subscriptions deliver into a channel of
//     Options.ReceiveBuffer messages; when it is full nats.go drops the
//     message and reports nats.ErrSlowConsumer to the error handler, once
//     per run of drops.
//
// Both count in Stats.SlowConsumer, are logged at most once per
// slowLogEvery (with the count of events since the previous line), and set
// Stats.LastSlowConsumer, which the daemon's health check turns into
// "degraded" for a while.
//
// The embedded server also drops publications on their way to the other
// nodes: a write to a route (another node's server) that takes longer than
// its write deadline makes the route a slow consumer, which the server
// closes when nothing of it could be written (what it held is lost) and
// otherwise keeps, behind. It counts those itself, once per slowdown:
// Stats.SlowConsumerRoutes reads its count, and watchSlow notes the time
// (Stats.LastRouteSlowConsumer) and logs a warning.

// slowLogEvery is the shortest time between two log lines about slow
// consumers.
const slowLogEvery = 10 * time.Second

// slowWatch is a Broker's record of slow-consumer events.
type slowWatch struct {
	client, server atomic.Int64 // events by kind (see Stats)
	last           atomic.Int64 // unix nanoseconds of the latest event; 0: none
	lastRoute      atomic.Int64 // the same for the embedded server's route slow consumers

	mu         sync.Mutex
	serverSeen uint64    // the embedded server's client slow consumers already counted
	routeSeen  uint64    // and its route slow consumers already noted
	logged     time.Time // time of the latest log line
	unlogged   int64     // events since
	kinds      string    // their kinds, for the next line
}

// onAsyncError is nats.go's error handler, on its callback goroutine.
func (b *Broker) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	if errors.Is(err, nats.ErrSlowConsumer) {
		b.slow.client.Add(1)
		b.slowEvent("client", zap.String("subject", subject))
		return
	}
	b.log.Warn("natsbroker: NATS error", zap.String("subject", subject), zap.Error(err))
}

// checkServerSlow counts the slow consumers the embedded server found
// among its clients since the previous call: the connection of this node,
// when called as it is lost (the server counts before it closes), or
// another client of ClientListen. It returns whether there were any.
func (b *Broker) checkServerSlow() bool {
	if b.srv == nil {
		return false
	}
	n := b.srv.NumSlowConsumersClients()
	w := &b.slow
	w.mu.Lock()
	d := int64(n - w.serverSeen)
	w.serverSeen = n
	w.mu.Unlock()
	if d <= 0 {
		return false
	}
	b.slow.server.Add(d)
	b.slowEvent("server", zap.Int64("connections", d))
	return true
}

// checkRouteSlow notes the slow consumers the embedded server found among
// its routes since the previous call, and logs them.
func (b *Broker) checkRouteSlow() {
	if b.srv == nil {
		return
	}
	n := b.srv.NumSlowConsumersRoutes()
	w := &b.slow
	w.mu.Lock()
	d := n - w.routeSeen
	w.routeSeen = n
	w.mu.Unlock()
	if d == 0 {
		return
	}
	w.lastRoute.Store(time.Now().UnixNano())
	b.log.Warn("natsbroker: route slow consumer: the embedded NATS server fell behind on its route to another node, whose subscribers may miss publications",
		zap.Uint64("events", d), zap.Uint64("total", n))
}

// slowEvent records a slow-consumer event of kind ("client": nats.go
// dropped messages; "server": the NATS server closed a connection) and
// logs it unless a line was logged less than slowLogEvery ago.
func (b *Broker) slowEvent(kind string, field zap.Field) {
	now := time.Now()
	w := &b.slow
	w.last.Store(now.UnixNano())
	w.mu.Lock()
	w.unlogged++
	if w.kinds == "" {
		w.kinds = kind
	} else if w.kinds != kind {
		w.kinds = "client and server"
	}
	if now.Sub(w.logged) < slowLogEvery {
		w.mu.Unlock()
		return
	}
	events, kinds := w.unlogged, w.kinds
	w.logged, w.unlogged, w.kinds = now, 0, ""
	w.mu.Unlock()
	b.logSlow(events, kinds, field)
}

// flushSlowLog logs the events that slowEvent left unlogged, once
// slowLogEvery has passed since the previous line.
func (b *Broker) flushSlowLog() {
	now := time.Now()
	w := &b.slow
	w.mu.Lock()
	if w.unlogged == 0 || now.Sub(w.logged) < slowLogEvery {
		w.mu.Unlock()
		return
	}
	events, kinds := w.unlogged, w.kinds
	w.logged, w.unlogged, w.kinds = now, 0, ""
	w.mu.Unlock()
	b.logSlow(events, kinds, zap.Skip())
}

func (b *Broker) logSlow(events int64, kinds string, field zap.Field) {
	b.log.Warn("natsbroker: slow consumer: NATS dropped publications on their way to this node, which did not take them in fast enough",
		zap.String("where", kinds), zap.Int64("events", events), field,
		zap.Int64("total", b.slow.client.Load()+b.slow.server.Load()))
}

// watchSlow checks the embedded server's slow consumers (its clients' and
// its routes') and logs what slowEvent held back, every second, until
// Close.
func (b *Broker) watchSlow() {
	defer b.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			b.checkServerSlow()
			b.checkRouteSlow()
			b.flushSlowLog()
		case <-b.done:
			return
		}
	}
}

// lastSlow returns the time of the latest slow-consumer event, or the
// zero time.
func (w *slowWatch) lastSlow() time.Time { return unixTime(&w.last) }

// unixTime is the time of the unix nanoseconds in ns, or the zero time for
// 0.
func unixTime(ns *atomic.Int64) time.Time {
	if n := ns.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
