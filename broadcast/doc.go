// Package broadcast is wsd's publish/subscribe hub: topics, encode-once
// fan-out over event loops, and a slow-consumer policy.
//
// A published message is encoded once into a reference-counted pooled
// buffer. Every event loop that has subscribers of the topic gets one task
// through its own FIFO (engine.Loop.Post); the loop queues the same bytes for
// each of its local subscribers and, once it has run every task it was
// given, writes each connection's queued frames with one syscall. Subscriber
// sets belong to their loop, so the fan-out takes no lock and makes no
// allocation per subscriber. The buffer returns to the pool when the last
// loop is done with it.
//
// Order: for every connection, the messages of a publisher arrive in the
// order it published them. A connection that stays open and within its
// outbound cap loses nothing.
//
// Slow consumers: before queueing a frame the loop checks the connection's
// backlog (bytes the socket has not taken, plus frames queued in this batch)
// against the engine's Options.MaxBuffered (and the hub's own
// Options.MaxBuffered, when set); a connection under the cap takes the
// frame whole, however large. At the cap, Options.Policy either drops the
// frame (counted) or closes the connection (code Options.CloseCode,
// counted), before the engine's cap would close it.
//
// History: topics that Options.History names keep their last messages,
// each at a stream position (an offset, +1 per message, in an epoch), and
// SubscribeSince resumes a connection from a position with no gap and no
// duplicate, or says that it cannot (Recovery.Recovered false). Options.
// Envelope and SetEnvelope give a connection each publication wrapped with
// its topic and position, built once per publish. A Broker that keeps
// history (HistoryFetcher) makes every node agree on positions. Topics
// without history cost nothing more.
//
// Use it by wrapping your engine.Handler with Hub.Handler, so the hub learns
// of every connection and forgets closed ones:
//
//	hub := broadcast.New(broadcast.Options{})
//	e, _ := engine.New(hub.Handler(myHandler), opts)
//	// in myHandler.OnOpen (on the loop):  hub.Subscribe(c, "news")
//	// from anywhere:                     hub.Publish("news", codec.OpText, []byte("hi"))
package broadcast
