package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/codec"
)

// Engine is a WebSocket server running on gnet event loops. Create it with
// New, start it with Run, stop it with Shutdown.
type Engine struct {
	opts      Options
	h         Handler
	log       *zap.Logger
	tickEvery int64 // timer resolution, ns

	mu    sync.Mutex
	loops map[gnet.EventLoop]*Loop
	list  atomic.Pointer[[]*Loop]

	gnet     gnet.Engine
	ready    chan struct{}
	stopping atomic.Bool
	stopped  chan struct{}
	runOnce  atomic.Bool

	now     atomic.Int64 // coarse clock, ns, advanced by the ticker
	queued  atomic.Int64 // bytes of frames Send queued on every loop, not yet written
	limits  limitCounts
	reclaim reclaimer // only the ticker goroutine touches it
	adm     admitter  // admission limits (admit.go)

	// wss (tls.go, tls_handshake.go): the configuration with its defaults,
	// which listeners serve it, and the handshake slots.
	tlsConf       *tls.Config
	listen        listenKind
	tlsPorts      []int
	tlsPaths      []string
	gate          tlsGate
	tlsHandshakes atomic.Int64
	tlsFailures   atomic.Int64

	rateLimited bool // a message or byte rate limit is set: every connection has a guard
	nextID      atomic.Uint64
	conns       atomic.Int64 // TCP connections, any state
	upgrades    atomic.Int64
	closes      closeCounts
}

// New returns an Engine that will serve h with opts (defaults filled in).
func New(h Handler, opts Options) (*Engine, error) {
	if h == nil {
		return nil, errors.New("engine: nil Handler")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		opts:    o,
		h:       h,
		log:     o.Logger,
		loops:   make(map[gnet.EventLoop]*Loop),
		ready:   make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if o.TLS != nil {
		if e.tlsConf, err = tlsDefaults(o.TLS); err != nil {
			return nil, err
		}
		e.gate.init(o.MaxTLSHandshakes)
	}
	e.tlsListeners()
	e.tickEvery = int64(tickFor(&o))
	e.rateLimited = o.MaxMessageRate > 0 || o.MaxByteRate > 0
	e.adm.init(&o)
	e.now.Store(time.Now().UnixNano())
	e.list.Store(new([]*Loop))
	return e, nil
}

// tickFor picks the timer resolution: a quarter of the shortest timeout,
// between 10 ms and 1 s.
func tickFor(o *Options) time.Duration {
	t := time.Second
	for _, d := range []time.Duration{o.HandshakeTimeout, o.PingInterval, o.IdleTimeout, o.CloseTimeout, o.WriteTimeout, o.MessageTimeout} {
		if d > 0 && d/4 < t {
			t = d / 4
		}
	}
	return max(t, 10*time.Millisecond)
}

// Run listens on Options.Addrs (and TLSAddrs) and serves until Shutdown.
// It blocks, and returns ErrEngineClosed after a Shutdown, or the error
// that stopped it. Run may be called once.
func (e *Engine) Run() error {
	if !e.runOnce.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice")
	}
	defer close(e.stopped)
	addrs := e.addrs()
	for _, a := range addrs {
		if path, ok := strings.CutPrefix(a, "unix://"); ok {
			removeStaleSocket(path)
			defer os.Remove(path)
		}
	}
	opts := []gnet.Option{
		gnet.WithNumEventLoop(e.numLoops()),
		gnet.WithReusePort(e.opts.ReusePort),
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(e.log.Sugar()),
	}
	err := gnet.Rotate(&events{e: e}, addrs, opts...)
	if e.stopping.Load() {
		return ErrEngineClosed
	}
	if err == nil {
		err = ErrEngineClosed
	}
	return err
}

// addrs returns every listen address: Addrs, then TLSAddrs.
func (e *Engine) addrs() []string {
	return append(slices.Clip(e.opts.Addrs), e.opts.TLSAddrs...)
}

func (e *Engine) numLoops() int {
	if e.opts.EventLoops > 0 {
		return e.opts.EventLoops
	}
	return runtime.NumCPU()
}

// removeStaleSocket deletes a unix socket file left by an earlier run, and
// nothing else.
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
}

// Ready is closed once the engine listens on every address.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// Shutdown stops accepting connections, sends close 1001 to every open
// WebSocket, waits for them to finish their closing handshakes (or for ctx
// to end), and stops the event loops. It returns ctx.Err() if connections
// were still open when ctx ended, and ErrEngineClosed if already called.
func (e *Engine) Shutdown(ctx context.Context) error {
	if !e.stopping.CompareAndSwap(false, true) {
		return ErrEngineClosed
	}
	select {
	case <-e.ready:
	case <-e.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	e.log.Info("shutting down", zap.Int64("connections", e.conns.Load()))
	for _, l := range *e.list.Load() {
		l.enqueue(task{kind: taskShutdown})
	}
	var err error
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for e.conns.Load() > 0 && err == nil {
		select {
		case <-poll.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := e.gnet.Stop(stopCtx); serr != nil && err == nil {
		err = fmt.Errorf("engine: stopping event loops: %w", serr)
	}
	<-e.stopped
	e.log.Info("shut down")
	return err
}

// clock returns the engine's coarse time in ns (advanced every tick).
func (e *Engine) clock() int64 { return e.now.Load() }

// loopFor returns wsd's state for a gnet event loop, creating it on first use.
func (e *Engine) loopFor(el gnet.EventLoop) *Loop {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.loops[el]
	if l == nil {
		l = newLoop(e, el, len(*e.list.Load()))
		e.loops[el] = l
		list := append(append([]*Loop(nil), *e.list.Load()...), l)
		e.list.Store(&list)
	}
	return l
}

// events adapts Engine to gnet.EventHandler without exporting its methods.
type events struct {
	gnet.BuiltinEventEngine
	e *Engine
}

func (ev *events) OnBoot(g gnet.Engine) gnet.Action {
	e := ev.e
	e.gnet = g
	e.log.Info("listening", zap.Strings("addrs", e.opts.Addrs), zap.Strings("tls_addrs", e.opts.TLSAddrs), zap.Bool("tls", e.tlsConf != nil), zap.Int("event_loops", e.numLoops()))
	close(e.ready)
	return gnet.None
}

func (ev *events) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	e := ev.e
	if e.stopping.Load() {
		return nil, gnet.Close
	}
	l := e.loopFor(gc.EventLoop())
	c := &Conn{gc: gc, loop: l, remote: gc.RemoteAddr(), state: stateHandshake}
	c.dec.MaxMessageSize = e.opts.MaxMessageSize
	gc.SetContext(c)
	l.conns.add(c)
	e.conns.Add(1)
	t := e.opts.HandshakeTimeout
	if e.servesTLS(gc) {
		c.extra.Store(&connExtra{tls: &tlsConn{c: c, local: gc.LocalAddr()}})
		if t == 0 { // a stalled TLS handshake holds a slot: it always has a deadline
			t = DefaultHandshakeTimeout
		}
	}
	if t > 0 {
		c.deadline = e.clock() + int64(t)
		l.wheel.schedule(c, c.deadline)
	}
	e.limitKernelUnsent(gc)
	e.admit(c)
	return nil, gnet.None
}

func (ev *events) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	l := c.loop
	if l.enter() {
		defer l.exit()
	}
	if t := c.tlsConn(); t != nil {
		return l.tlsTraffic(c, t)
	}
	return l.input(c)
}

// input handles the bytes buffered for c (for wss, the plaintext decrypted
// from them): the upgrade request, then frames. Loop only.
func (l *Loop) input(c *Conn) gnet.Action {
	if c.state == stateHandshake {
		if c.admit&refused != 0 {
			return l.answerRefused(c)
		}
		if act := l.handshake(c); act != gnet.None || c.state != stateOpen {
			return act
		}
	}
	c.lastRead = l.e.clock()
	if l.holdInput(c) {
		return gnet.None
	}
	act := l.readFrames(c)
	l.flush()
	return act
}

func (ev *events) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		return gnet.None
	}
	e, l := ev.e, c.loop
	if t := c.tlsConn(); t != nil {
		t.closed(e)
	}
	l.dropCork(c)
	l.wheel.unschedule(c)
	l.conns.remove(c)
	c.state = stateClosed
	c.gone.Store(true)
	l.dropGuard(c)
	if !c.busy {
		c.dec.Release()
	}
	e.conns.Add(-1)
	e.release(c)
	if c.opened {
		ce := c.closeError(err)
		e.closes.add(ce.Code)
		if ce.Code == codec.StatusAbnormalClosure && err != nil {
			if ent := e.log.Check(zap.DebugLevel, "connection lost"); ent != nil { // no fields built when debug is off
				ent.Write(zap.Uint64("id", c.id), zap.Error(err))
			}
		}
		l.closed(c, ce)
	}
	return gnet.None
}

func (ev *events) OnTick() (time.Duration, gnet.Action) {
	e := ev.e
	now := time.Now().UnixNano()
	e.now.Store(now)
	e.reclaim.tick(e, now)
	for _, l := range *e.list.Load() {
		l.timerDue.Store(true)
		l.ring()
	}
	return time.Duration(e.tickEvery), gnet.None
}
