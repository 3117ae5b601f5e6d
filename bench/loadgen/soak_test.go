package loadgen

import (
	"fmt"
	"testing"
)

// newTestSoak is a soak state of n well-behaved clients in rooms of size,
// every second one following bulk, without sockets.
func newTestSoak(n, size int) *soak {
	s := &soak{job: &SoakJob{RoomSize: size, RoomBase: 10, BulkEvery: 2}, conns: make([]*Conn, n)}
	for i := range s.conns {
		s.conns[i] = &Conn{Index: i}
	}
	s.roomSeen = make([]uint64, n*size)
	s.newsSeen = make([]uint64, n)
	s.bulkSeen = make([]uint64, n)
	s.sent = make([]uint64, n)
	return s
}

func TestSoakSequences(t *testing.T) {
	s := newTestSoak(4, 2) // rooms 10 (clients 0, 1) and 11 (clients 2, 3)
	msg := func(i int, format string, args ...any) {
		s.onMessage(s.conns[i], 0x1, fmt.Appendf(nil, format, args...))
	}
	s.sent[2] = 3 // client 2 (member 0 of room 11) published 3 messages
	msg(3, "m 11 0 1 %d", Now())
	msg(3, "m 11 0 3 %d", Now()) // 2 lost
	msg(3, "m 11 0 2 %d", Now()) // late: reordered
	msg(2, "m 11 0 1 %d", Now())
	if s.stats.Lost != 1 || s.stats.LostBy != [numTopics]uint64{1, 0, 0} || s.stats.Reordered != 1 || s.stats.Messages != 4 {
		t.Fatalf("after a gap and a late message: %+v", s.stats)
	}
	msg(0, "m 11 0 1 %d", Now())                  // another room's message
	msg(0, "m 10 5 1 %d", Now())                  // no such member
	msg(0, "x")                                   // not a message of the scenario
	s.onMessage(s.conns[0], 0x2, []byte("n 1 1")) // binary
	if s.stats.Unexpected != 4 {
		t.Fatalf("unexpected %d, want 4", s.stats.Unexpected)
	}
	msg(1, `{"op":"published","topic":"room.10"}`)
	msg(1, `{"op":"error","topic":"room.10","error":"no"}`)
	if s.stats.Acks != 1 || s.stats.Errors != 1 {
		t.Fatalf("acks %d errors %d", s.stats.Acks, s.stats.Errors)
	}

	// At the end: client 2 lacks messages 2 and 3 of its own, client 3
	// lacks none; two news went to all four, one bulk to clients 0 and 2.
	for i := range 4 {
		msg(i, "n 1 %d", Now())
	}
	msg(0, "b 1 %d xxxx", Now())
	end := SoakEnd{News: 2, Bulk: 1}
	if got := s.missing(end); got != [numTopics]uint64{2, 4, 1} {
		t.Fatalf("missing %v, want 2 room, 4 news, 1 bulk", got)
	}
	msg(2, "m 11 0 2 %d", Now())
	msg(2, "m 11 0 3 %d", Now())
	msg(2, "b 1 %d xxxx", Now())
	for i := range 4 {
		msg(i, "n 2 %d", Now())
	}
	if got := s.missing(end); got != [numTopics]uint64{} {
		t.Fatalf("missing %v after every message arrived", got)
	}
	if s.hist.N != s.stats.Messages {
		t.Fatalf("latency of %d messages for %d", s.hist.N, s.stats.Messages)
	}
}

func TestSoakPath(t *testing.T) {
	j := &SoakJob{RoomSize: 25, RoomBase: 100, BulkEvery: 250}
	if p := j.soakPath(0); p != "/?topics=room.100,news,bulk" {
		t.Fatal(p)
	}
	if p := j.soakPath(26); p != "/?topics=room.101,news" {
		t.Fatal(p)
	}
}

func TestNumbers(t *testing.T) {
	var f [4]uint64
	if n := numbers([]byte(" 12 3 456 1700000000000000000"), f[:]); n != 4 || f != [4]uint64{12, 3, 456, 1700000000000000000} {
		t.Fatalf("%d %v", n, f)
	}
	if n := numbers([]byte(" 7 8 xxxx"), f[:]); n != 2 || f[0] != 7 || f[1] != 8 {
		t.Fatalf("%d %v", n, f)
	}
	if n := numbers([]byte(" 7x 8"), f[:]); n != 0 {
		t.Fatalf("a number followed by a letter: %d", n)
	}
}
