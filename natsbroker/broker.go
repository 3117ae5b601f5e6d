package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
)

// Broker is a broadcast.Broker over NATS. Its methods are safe for
// concurrent use.
type Broker struct {
	opts     Options
	node     string
	instance uint64 // random, new at each start: tells a restarted node apart
	log      *zap.Logger

	srv *server.Server // the embedded server, or nil
	nc  *nats.Conn

	// Subjects.
	presenceSubject, topicsSubject, directSubject string

	msgs      chan *nats.Msg // publications of every topic subscription, in arrival order
	deliver   func(*broadcast.BrokerMessage)
	startOnce sync.Once

	local atomic.Pointer[Local]
	hist  *historyState             // Options.History: JetStream (history.go); nil without
	epoch atomic.Pointer[connEpoch] // see flushNATS
	pub   publisher
	iq    interestQueue
	pr    presence

	in, out, errs, reconnects  atomic.Int64
	delivered, dups, malformed atomic.Int64
	slow                       slowWatch // slow consumers (slow.go)

	closeMu sync.Mutex
	closed  bool
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
}

// publisher is the state Publish and Flush share, under mu.
type publisher struct {
	mu   sync.Mutex
	seq  uint64 // publishes so far; each message's id with Broker.instance
	body []byte // scratch: the message being published
	subj []byte // scratch: its subject
	// unconfirmed lists, in order, the connection generations (nats.go's
	// reconnect count) of the publishes no Flush has confirmed yet: one
	// entry per generation, with the seq of its first publish.
	unconfirmed []genMark
}

type genMark struct {
	seq uint64
	gen uint64
}

// New starts the embedded server when Options.URLs is empty, connects to
// NATS and returns the Broker, ready to be given to broadcast.New. It
// fails if the first connection fails; later losses are retried forever.
func New(o Options) (*Broker, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		opts:     o,
		node:     o.Node,
		instance: randomUint64(),
		log:      o.Logger,
		msgs:     make(chan *nats.Msg, o.ReceiveBuffer),
		done:     make(chan struct{}),
	}
	if b.node == "" {
		b.node = randomNode()
	}
	b.presenceSubject = o.Prefix + ".presence"
	b.topicsSubject = o.Prefix + ".ctl.topics"
	b.directSubject = directSubject(o.Prefix, b.node)
	b.iq.init()
	b.pr.init()
	b.nextEpoch()

	nopts := []nats.Option{
		nats.Name("wsd node " + b.node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectBufSize(-1), // publishes fail while disconnected instead of waiting in a buffer
		nats.PingInterval(o.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ErrorHandler(b.onAsyncError),
	}
	url := strings.Join(o.URLs, ",")
	if len(o.URLs) == 0 {
		if b.srv, err = startServer(&o, b.node, b.log); err != nil {
			return nil, err
		}
		nopts = append(nopts, nats.InProcessServer(b.srv))
	} else {
		if o.CredsFile != "" {
			nopts = append(nopts, nats.UserCredentials(o.CredsFile))
		}
		if o.TLSCAFile != "" {
			nopts = append(nopts, nats.RootCAs(o.TLSCAFile))
		}
	}
	if b.nc, err = nats.Connect(url, nopts...); err != nil {
		b.stopServer()
		return nil, fmt.Errorf("natsbroker: connecting to NATS: %w", err)
	}
	if err := b.subscribeControl(); err != nil {
		b.nc.Close()
		b.stopServer()
		return nil, err
	}
	if err := b.startHistory(); err != nil {
		b.nc.Close()
		b.stopServer()
		return nil, err
	}
	b.wg.Add(3)
	go b.applyInterest()
	go b.runPresence()
	go b.watchSlow()
	return b, nil
}

// subscribeControl subscribes to the subjects every node listens on, and
// waits until the server has them.
func (b *Broker) subscribeControl() error {
	if _, err := b.nc.ChanSubscribe(b.presenceSubject, b.pr.msgs); err != nil {
		return fmt.Errorf("natsbroker: subscribing: %w", err)
	}
	if _, err := b.nc.Subscribe(b.topicsSubject, b.answerTopics); err != nil {
		return fmt.Errorf("natsbroker: subscribing: %w", err)
	}
	if _, err := b.nc.Subscribe(b.directSubject, b.answerDirect); err != nil {
		return fmt.Errorf("natsbroker: subscribing: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestTimeout)
	defer cancel()
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsbroker: subscribing: %w", err)
	}
	return nil
}

// Start implements broadcast.Broker: publications received from now on go
// to deliver, from one goroutine, in the order NATS delivers them.
func (b *Broker) Start(deliver func(*broadcast.BrokerMessage)) {
	b.startOnce.Do(func() {
		b.closeMu.Lock()
		defer b.closeMu.Unlock()
		if b.closed {
			return
		}
		b.deliver = deliver
		b.wg.Add(1)
		go b.dispatch()
	})
}

// Publish implements broadcast.Broker. It sends m once on the subject of
// each of its topics, every copy naming all the topics (a node delivers
// the first copy it receives and drops the others). It fails at once,
// wrapping broadcast.ErrBrokerUnavailable, while the connection is down:
// nothing is buffered for later. A nil error means the message was handed
// to the connection, not that the server has it (Flush waits for that).
// Several topics are sent in turn; if one fails the earlier ones are
// already gone.
func (b *Broker) Publish(m *broadcast.BrokerMessage) error {
	if len(m.Topics) == 0 {
		return nil
	}
	if !b.nc.IsConnected() {
		b.errs.Add(1)
		if b.isClosed() {
			return ErrClosed
		}
		return errNotConnected
	}
	gen := b.nc.Stats().Reconnects
	p := &b.pub
	p.mu.Lock()
	err := b.publishLocked(m, gen, nil)
	p.mu.Unlock()
	if err != nil {
		b.errs.Add(1)
	}
	return err
}

// publishLocked sends m; b.pub.mu is held, so that the copies of a message
// follow each other on the connection and ids grow in send order. A copy
// to a topic with history asks for the stream's PubAck (publishStored),
// appended to acks if not nil.
func (b *Broker) publishLocked(m *broadcast.BrokerMessage, gen uint64, acks *[]*pubAck) error {
	p := &b.pub
	p.seq++
	if n := len(p.unconfirmed); n == 0 || p.unconfirmed[n-1].gen != gen {
		p.unconfirmed = append(p.unconfirmed, genMark{seq: p.seq, gen: gen})
	}
	body := appendPublication(p.body[:0], b.instance, p.seq, m)
	body = append(body, m.Payload...)
	if cap(body) <= maxScratch {
		p.body = body[:0] // keep the scratch buffer, unless a huge message grew it
	}
	for _, t := range m.Topics {
		stored := b.hasHistory(t)
		p.subj = b.appendPublishSubject(p.subj[:0], t, stored)
		// nats.go copies the subject into its write buffer and keeps no
		// reference, so the scratch bytes can stand in for a string.
		subj := unsafe.String(unsafe.SliceData(p.subj), len(p.subj))
		if stored {
			if err := b.publishStored(subj, t, body, p.seq, acks); err != nil {
				return err
			}
		} else if err := b.nc.Publish(subj, body); err != nil {
			return publishError(err)
		}
		b.out.Add(1)
	}
	return nil
}

// maxScratch is the largest publish buffer kept for the next publish:
// NATS's default max_payload.
const maxScratch = 1 << 20

// publishError wraps an error of nats.Conn.Publish.
func publishError(err error) error {
	switch {
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return errNotConnected
	}
	return fmt.Errorf("natsbroker: publish: %w", err)
}

// Flush implements broadcast.Broker: it returns nil once the server has
// received every message published before the call (a NATS ping and its
// pong, nats.Conn.FlushWithContext) and, with History, the stream has
// stored every publish to a topic with history made before it (their
// PubAcks; a failure wraps ErrNotStored, see history_publish.go). It wraps
// broadcast.ErrBrokerUnavailable when the connection is down, when the
// server does not answer within ctx (or Options.RequestTimeout if ctx has
// no deadline), and when the connection was lost or re-established since
// a publish it had not confirmed: that publish may have been lost with the
// old connection. Such a loss is reported once, to the first Flush that
// sees it (with concurrent callers, not necessarily the publisher's), so
// the first Flush after a reconnection may report a message of another
// caller.
func (b *Broker) Flush(ctx context.Context) error {
	if !b.nc.IsConnected() {
		if b.isClosed() {
			return ErrClosed
		}
		return errNotConnected
	}
	start := time.Now()
	p := &b.pub
	p.mu.Lock()
	seq := p.seq
	oldest, pending := uint64(0), len(p.unconfirmed) > 0
	if pending {
		oldest = p.unconfirmed[0].gen
	}
	p.mu.Unlock()

	err := b.flushNATS(ctx)
	gen := b.nc.Stats().Reconnects
	p.mu.Lock()
	if err == nil {
		p.confirm(seq)
	} else {
		p.forget(gen) // what was published on an older connection is reported lost now
	}
	p.mu.Unlock()
	if err == nil && pending && oldest != gen {
		err = errReconnected
	}
	if err == nil && b.hist != nil {
		err = b.waitStored(ctx, seq, start)
	}
	return err
}

// forget drops the publishes made on connections older than gen. p.mu is
// held.
func (p *publisher) forget(gen uint64) {
	i := 0
	for i < len(p.unconfirmed) && p.unconfirmed[i].gen < gen {
		i++
	}
	p.unconfirmed = append(p.unconfirmed[:0], p.unconfirmed[i:]...)
}

// confirm forgets the publishes up to seq. p.mu is held.
func (p *publisher) confirm(seq uint64) {
	u := p.unconfirmed
	for len(u) > 0 {
		end := p.seq // the last publish of u[0]'s generation
		if len(u) > 1 {
			end = u[1].seq - 1
		}
		if end > seq {
			break
		}
		u = u[1:]
	}
	if len(u) > 0 && u[0].seq <= seq {
		u[0].seq = seq + 1
	}
	p.unconfirmed = append(p.unconfirmed[:0], u...)
}

// flushNATS waits for the server's answer to a ping. It gives up when
// the connection is lost or re-established meanwhile: nats.go can lose a
// ping queued while it reconnects, and its flush would then wait for the
// next pong.
func (b *Broker) flushNATS(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.RequestTimeout)
		defer cancel()
	}
	for {
		ep := b.epoch.Load()
		gen := b.nc.Stats().Reconnects
		err := b.flushEpoch(ctx, ep)
		switch {
		case err == nil:
			return nil
		case b.isClosed():
			return ErrClosed
		case ep.ctx.Err() == nil && ctx.Err() != nil:
			return fmt.Errorf("natsbroker: flush: %w", ctx.Err())
		case ep.ctx.Err() != nil && ctx.Err() == nil && b.nc.IsConnected() && b.nc.Stats().Reconnects == gen:
			continue // the news of an earlier change came late: this ping was not affected
		}
		return fmt.Errorf("natsbroker: flush: %w: %w", broadcast.ErrBrokerUnavailable, err)
	}
}

// flushEpoch is one flush, given up when ep ends.
func (b *Broker) flushEpoch(ctx context.Context, ep *connEpoch) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(ep.ctx, cancel)()
	return b.nc.FlushWithContext(ctx)
}

// connEpoch lasts as long as one state of the connection: it is cancelled
// when the connection is lost and when it is re-established.
type connEpoch struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// nextEpoch ends the current connEpoch and starts another.
func (b *Broker) nextEpoch() {
	ctx, cancel := context.WithCancel(context.Background())
	if old := b.epoch.Swap(&connEpoch{ctx, cancel}); old != nil {
		old.cancel()
	}
}

// dispatch hands received publications to the hub, in arrival order,
// dropping the extra copies of multi-topic messages.
func (b *Broker) dispatch() {
	defer b.wg.Done()
	type last struct {
		seq   uint64
		sweep uint64
	}
	var (
		w     wireMsg
		bm    broadcast.BrokerMessage
		seen  = make(map[uint64]last) // by sender instance: its last multi-topic message
		sweep uint64
	)
	tick := time.NewTicker(dedupeSweep)
	defer tick.Stop()
	for {
		select {
		case m := <-b.msgs:
			b.in.Add(1)
			if !decodePublication(m.Data, &w) {
				b.malformed.Add(1)
				continue
			}
			if seq, prev, ok := positioned(m); ok && b.hist != nil {
				b.dispatchPositioned(m, &w, seq, prev) // a topic with history (history.go)
				continue
			}
			if len(w.topics) > 1 {
				// The copies of one message leave its node one after the
				// other on one connection, and NATS keeps a connection's
				// order towards each subscriber: no other message of that
				// node comes between them.
				if l, ok := seen[w.instance]; ok && l.seq == w.seq {
					b.dups.Add(1)
					continue
				}
				seen[w.instance] = last{seq: w.seq, sweep: sweep}
			}
			bm = broadcast.BrokerMessage{Topics: w.topics, Op: w.op, Payload: w.payload, Origin: w.origin, Exclude: w.exclude}
			b.deliver(&bm)
			b.delivered.Add(1)
		case <-tick.C:
			for k, l := range seen {
				if l.sweep != sweep {
					delete(seen, k)
				}
			}
			sweep++
		case <-b.done:
			return
		}
	}
}

// dedupeSweep is how often dispatch forgets the senders it has not heard
// from since the previous sweep; the copies of a message arrive within
// microseconds of each other.
const dedupeSweep = 10 * time.Second

// Interest implements broadcast.Broker: it queues the change and returns;
// one goroutine subscribes to and unsubscribes from the topics' subjects
// in the order of the calls (see WaitInterest).
func (b *Broker) Interest(topic string, on bool) {
	if !b.isClosed() {
		b.iq.push(topic, on)
	}
}

// Status implements broadcast.Broker. In and Out count NATS messages on
// topic subjects (a publish to n topics is n messages), Errors the
// Publish calls that failed.
func (b *Broker) Status() broadcast.BrokerStatus {
	return broadcast.BrokerStatus{
		Node:       b.node,
		Connected:  b.nc.IsConnected(),
		Reconnects: b.reconnects.Load(),
		In:         b.in.Load(),
		Out:        b.out.Load(),
		Errors:     b.errs.Load(),
	}
}

// Stats are a Broker's state and counters, for metrics.
type Stats struct {
	broadcast.BrokerStatus
	Delivered  int64 // publications handed to the hub
	Duplicates int64 // extra copies of multi-topic publications dropped
	Malformed  int64 // messages of wsd's subjects that could not be read
	// SlowConsumer counts the times NATS dropped publications on their way
	// to this node because it did not take them in fast enough (slow.go):
	// runs of drops by nats.go (ReceiveBuffer full), and connections the
	// embedded server closed as slow consumers (SlowConsumerServer of
	// them). With URLs a server's closing shows only as a reconnection.
	SlowConsumer       int64
	SlowConsumerServer int64
	// LastSlowConsumer is the time of the latest of them (zero: none).
	LastSlowConsumer time.Time
	Subscriptions    int // topic subjects subscribed to
	Pending          int // Interest changes not yet applied
	Nodes            int // live nodes, this one included (heartbeats)
	Routes           int // embedded server: other servers it has routes to (0 without a cluster)

	// SlowConsumerRoutes counts the times the embedded server fell behind
	// on a route to another node's (slow.go): its writes there took longer
	// than WriteDeadline, and that node's subscribers may have missed
	// publications. It is the server's own count, read at the call; 0 with
	// URLs. LastRouteSlowConsumer is the time the broker saw the latest,
	// within a second (zero: none).
	SlowConsumerRoutes    int64
	LastRouteSlowConsumer time.Time
}

// Stats returns the current state. Any goroutine.
func (b *Broker) Stats() Stats {
	s := Stats{
		BrokerStatus: b.Status(),
		Delivered:    b.delivered.Load(),
		Duplicates:   b.dups.Load(),
		Malformed:    b.malformed.Load(),
		Nodes:        len(b.Nodes()),
	}
	server := b.slow.server.Load()
	s.SlowConsumer, s.SlowConsumerServer = b.slow.client.Load()+server, server
	s.LastSlowConsumer = b.slow.lastSlow()
	s.Subscriptions, s.Pending = b.iq.counts()
	s.LastRouteSlowConsumer = unixTime(&b.slow.lastRoute)
	if b.srv != nil {
		s.Routes = b.srv.NumRemotes()
		s.SlowConsumerRoutes = int64(b.srv.NumSlowConsumersRoutes())
	}
	return s
}

// Node returns this node's id.
func (b *Broker) Node() string { return b.node }

// Subject returns the NATS subject that carries topic.
func (b *Broker) Subject(topic string) string {
	return string(appendTopicSubject(nil, b.opts.Prefix, topic))
}

// ClusterAddr returns the address the embedded server accepts routes on
// (Options.Listen with the port chosen), or "" without one.
func (b *Broker) ClusterAddr() string {
	if b.srv == nil {
		return ""
	}
	if a := b.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ClientURL returns the URL on which the embedded server accepts NATS
// clients (Options.ClientListen), or "" without one.
func (b *Broker) ClientURL() string {
	if b.srv == nil || b.opts.ClientListen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// Close tells the other nodes this one is leaving, disconnects and stops
// the embedded server. The Hub does not call it: close the engine first,
// then the Broker. Later calls return nil.
func (b *Broker) Close() error {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	b.closeMu.Unlock()
	b.wg.Wait() // the presence goroutine says goodbye on its way out
	b.nc.Close()
	b.stopServer()
	b.epoch.Load().cancel()
	return nil
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *Broker) stopServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// Connection events, on nats.go's callback goroutine.

func (b *Broker) onDisconnect(_ *nats.Conn, err error) {
	b.nextEpoch()
	b.historyDisconnected()
	if b.isClosed() {
		return
	}
	if b.checkServerSlow() {
		err = errors.New("closed by the embedded NATS server as a slow consumer")
	}
	b.log.Warn("natsbroker: connection to NATS lost", zap.Error(err))
}

func (b *Broker) onReconnect(nc *nats.Conn) {
	b.nextEpoch()
	b.reconnects.Add(1)
	b.historyReconnected()
	b.log.Info("natsbroker: connection to NATS re-established", zap.String("server", nc.ConnectedUrlRedacted()))
}

func randomUint64() uint64 {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return binary.BigEndian.Uint64(r[:])
}

func randomNode() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
