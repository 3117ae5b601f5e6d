// Package natsbroker shares wsd's topics between nodes over NATS: it is a
// broadcast.Broker, plus cluster-wide topic counts, presence and direct
// sends to a connection of another node. It is the only package of wsd that
// imports nats.go and nats-server; a program that does not import it does
// not link them.
//
// # Running
//
// A node either joins an existing NATS deployment (Options.URLs, with
// CredsFile and TLSCAFile as needed), or runs a NATS server inside its own
// process and reaches it in-process, without a client port. Embedded
// servers join into a cluster over NATS routes: each node listens for
// routes on Options.Listen and dials Options.Routes, so a small cluster is
// a few wsd processes and no other service:
//
//	b, err := natsbroker.New(natsbroker.Options{
//		Node:   "ws1",
//		Listen: "10.0.0.1:6248",
//		Routes: []string{"nats://10.0.0.1:6248", "nats://10.0.0.2:6248", "nats://10.0.0.3:6248"},
//	})
//	hub := broadcast.New(broadcast.Options{Broker: b})
//	b.SetLocal(natsbroker.Local{Topics: hub.Topics, Count: hub.Count, SendTo: hub.SendTo})
//	// serve hub.Handler(h) with an engine; on shutdown: the engine, then b.Close()
//
// The zero Options run a standalone embedded server: a cluster of one.
//
// Whoever can publish under the prefix on the same NATS account reaches
// every node's clients, and whoever can reach a route port joins the
// cluster: give wsd its own NATS account (or user with subject
// permissions) and keep route ports on a private network.
//
// # Subjects
//
// Everything lives under Options.Prefix ("wsd"):
//
//	wsd.t.<token>     publications to a topic; token is EscapeToken(topic)
//	wsd.h.<hash>      publications to a topic whose token would be longer than MaxTokenLen
//	wsd.presence      heartbeats and presence counts of every node
//	wsd.ctl.topics    cluster-wide topic queries (request and replies)
//	wsd.n.<token>     direct sends to the node whose id is escaped in token
//	wsd.s.t.<token>   publications to a topic with history (Options.History),
//	                  stored by the JetStream stream WSD_HISTORY
//	wsd.r.t.<token>   what the stream republishes of them, with their
//	                  sequence and the previous one on the subject (history.go)
//
// A node subscribes to a topic's subject only while it has subscribers of
// the topic: the hub says so through Interest (first subscriber in, last
// out), and one goroutine applies the changes in order, so a node with no
// subscriber of a topic receives nothing of it.
//
// # Guarantees
//
// Delivery is at most once, as NATS core is: a message published while a
// node is disconnected, or in flight when a connection breaks, is not
// delivered there. But nothing is lost silently:
//
//   - Publish fails at once (wrapping broadcast.ErrBrokerUnavailable) while
//     the connection is down; nothing waits in a buffer to be sent later.
//   - Flush (Hub.PublishWait) returns nil only once the server has every
//     message published before it; it fails if the connection was
//     re-established since a publish it had not confirmed.
//   - nats.go reconnects by itself, forever, and subscribes again to every
//     topic the node still wants; Status().Connected says whether the node
//     reaches NATS, Status().Reconnects how often the connection came back.
//     With the embedded server the node always reaches its own server:
//     Stats().Routes says how many other servers it reaches.
//   - NATS has no flow control: publications that come faster than a node
//     takes them in pile up in its NATS server (up to Options.MaxPending
//     with the embedded server) and in its receive buffer
//     (Options.ReceiveBuffer). Past either, NATS drops them as from a
//     slow consumer; the node counts it in Stats().SlowConsumer, notes
//     its time in Stats().LastSlowConsumer and logs it (at most one line
//     per 10 s). The server's closing of the connection is recognised
//     with the embedded server only; with URLs it shows as a reconnection.
//
// Order: the messages published through one node reach every subscriber,
// on every node, in the order they were published (NATS keeps the order of
// one connection's messages towards each subscriber, and each node reads
// every topic's messages through one channel in arrival order).
//
// No duplicates: a message for several topics is sent once on each
// topic's subject, every copy naming all the topics and carrying the same
// id (the publishing Broker's random instance number and a sequence
// number). A node delivers the first copy it receives to the hub, which
// gives it once to every connection subscribed to any of the topics, and
// drops the other copies. See wire.go for the message layout.
//
// # Cluster views, presence, direct sends
//
// TopicCounts and AllTopics ask every node for its counts (Local.Count
// and Local.Topics) and gather the answers for up to Options.GatherTimeout.
// Presence returns a room's cluster-wide count from the nodes' heartbeats
// (Local.Presence, PresenceChanged, Local.OnPresence). SendTo delivers a
// message to a connection of any node through that node's Local.SendTo;
// FormatConnID and ParseConnID give connections cluster-wide ids of the
// form "node.connid".
package natsbroker
