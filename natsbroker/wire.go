package natsbroker

import (
	"encoding/binary"
	"unsafe"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// The messages nodes exchange are a compact binary header followed by the
// payload, in the NATS message body (no NATS headers: they are text that
// nats.go parses into a map per message). Integers are big-endian fixed
// width or unsigned varints (encoding/binary); a string is a varint length
// and its bytes. Every message starts with wireVersion, and a node drops
// (and counts in Stats.Malformed) what it cannot read.
//
// Publication, on each of its topics' subjects:
//
//	version  op  instance(8)  seq(8)  exclude(varint)  origin(string)
//	ntopics(varint)  topic(string)...  payload(the rest)
//
// instance is a random number drawn when the Broker starts and seq counts
// its publishes: a message published to several topics travels once on
// each topic's subject, each copy naming every topic, and a node delivers
// the first copy it receives and drops the others, which carry the same
// instance and seq (see Broker.Publish).
//
// Heartbeat, on <prefix>.presence:
//
//	version  flags(1: leaving)  instance(8)  interval-ms(varint)  node(string)
//	nrooms(varint)  (room(string) count(varint))...
//
// Topic query, on <prefix>.ctl.topics, with a reply subject:
//
//	version  kind(1: one topic, 2: all)  topic(the rest, kind 1)
//
// and each node's answer, in one or more replies of at most chunkSize bytes:
//
//	version  flags(1: last)  node(string)  ntopics(varint)  (topic(string) count(varint))...
//
// Direct send, on <prefix>.n.<node token>, with a reply subject:
//
//	version  op  conn(varint)  payload(the rest)
//
// and the answer: one status byte (directOK, directNoConn, directFailed
// followed by the error text, directNoHandler).
const wireVersion = 1

// Direct send answers.
const (
	directOK byte = iota
	directNoConn
	directFailed
	directNoHandler
)

// Limits on what a decoder believes, so that a corrupt count cannot make
// it allocate much.
const maxWireTopics = 1 << 16

// wireMsg is a decoded publication. Its strings and payload alias the
// message body, which nats.go allocates for each message and never reuses.
type wireMsg struct {
	op       codec.OpCode
	instance uint64
	seq      uint64
	exclude  uint64
	origin   string
	topics   []string
	payload  []byte
}

// appendPublication appends the header of a publication of m to dst
// (without its payload).
func appendPublication(dst []byte, instance, seq uint64, m *broadcast.BrokerMessage) []byte {
	dst = append(dst, wireVersion, byte(m.Op))
	dst = binary.BigEndian.AppendUint64(dst, instance)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.AppendUvarint(dst, m.Exclude)
	dst = appendString(dst, m.Origin)
	dst = binary.AppendUvarint(dst, uint64(len(m.Topics)))
	for _, t := range m.Topics {
		dst = appendString(dst, t)
	}
	return dst
}

// decodePublication reads data into w, reusing w.topics. It reports false
// for a body that is not a publication.
func decodePublication(data []byte, w *wireMsg) bool {
	r := reader{b: data}
	if r.u8() != wireVersion {
		return false
	}
	w.op = codec.OpCode(r.u8())
	w.instance = r.u64()
	w.seq = r.u64()
	w.exclude = r.uvarint()
	w.origin = r.str()
	n := r.uvarint()
	if r.bad || n == 0 || n > maxWireTopics || n > uint64(len(r.b)) {
		return false
	}
	w.topics = w.topics[:0]
	for range n {
		w.topics = append(w.topics, r.str())
	}
	if r.bad || (w.op != codec.OpText && w.op != codec.OpBinary) {
		return false
	}
	w.payload = r.b
	return true
}

// countsMsg is a decoded heartbeat or topic-query answer.
type countsMsg struct {
	flags    byte
	instance uint64 // heartbeat only
	interval uint64 // heartbeat only, in milliseconds
	node     string
	counts   []broadcast.TopicInfo
}

// Flags of countsMsg.
const (
	flagLeaving = 1 // heartbeat: the node is closing
	flagLast    = 1 // topic answer: the node's last chunk
)

// appendHeartbeat appends a heartbeat carrying rooms to dst.
func appendHeartbeat(dst []byte, flags byte, instance uint64, intervalMS uint64, node string, rooms []broadcast.TopicInfo) []byte {
	dst = append(dst, wireVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, instance)
	dst = binary.AppendUvarint(dst, intervalMS)
	dst = appendString(dst, node)
	return appendCounts(dst, rooms)
}

// decodeHeartbeat reads a heartbeat; the strings it returns are copies.
func decodeHeartbeat(data []byte) (countsMsg, bool) { return decodeCounts(data, true) }

// appendTopicAnswer appends one chunk of a node's topic-query answer.
func appendTopicAnswer(dst []byte, last bool, node string, topics []broadcast.TopicInfo) []byte {
	var flags byte
	if last {
		flags = flagLast
	}
	dst = append(dst, wireVersion, flags)
	dst = appendString(dst, node)
	return appendCounts(dst, topics)
}

// decodeTopicAnswer reads a topic-query answer; its strings are copies.
func decodeTopicAnswer(data []byte) (countsMsg, bool) { return decodeCounts(data, false) }

// decodeCounts reads a heartbeat or a topic-query answer, which differ
// only by the heartbeat's instance and interval.
func decodeCounts(data []byte, heartbeat bool) (countsMsg, bool) {
	r := reader{b: data}
	var m countsMsg
	if r.u8() != wireVersion {
		return m, false
	}
	m.flags = r.u8()
	if heartbeat {
		m.instance = r.u64()
		m.interval = r.uvarint()
	}
	m.node = string(r.bytes())
	m.counts = r.counts()
	return m, !r.bad && len(r.b) == 0
}

// countEntrySize is the most bytes appendCounts writes for e.
func countEntrySize(e broadcast.TopicInfo) int {
	return 2*binary.MaxVarintLen64 + len(e.Name)
}

func appendCounts(dst []byte, counts []broadcast.TopicInfo) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(counts)))
	for _, e := range counts {
		dst = appendString(dst, e.Name)
		dst = binary.AppendUvarint(dst, uint64(max(e.Subscribers, 0)))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// reader reads the fields of a message; after the first short or invalid
// field every read returns zero and bad is set.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		r.b = nil
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a length-prefixed field; the result aliases the message.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// str reads a length-prefixed field as a string that aliases the
// message body: the caller must never modify the body afterwards.
func (r *reader) str() string {
	b := r.bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// counts reads a list of names and counts, copying the names.
func (r *reader) counts() []broadcast.TopicInfo {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) { // every entry takes at least one byte
		r.bad = true
		return nil
	}
	out := make([]broadcast.TopicInfo, 0, n)
	for range n {
		name := string(r.bytes())
		c := r.uvarint()
		if r.bad {
			return nil
		}
		out = append(out, broadcast.TopicInfo{Name: name, Subscribers: int(min(c, 1<<31-1))})
	}
	return out
}
