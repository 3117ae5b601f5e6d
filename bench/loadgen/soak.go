package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// SoakJob is the soak scenario's part of a Job. The worker's Job.Conns
// well-behaved clients sit in rooms of RoomSize, numbered from RoomBase:
// client i is member i%RoomSize of room RoomBase+i/RoomSize and connects
// to "/?topics=room.N,news" (",bulk" too for every BulkEvery-th client).
// Together they publish PublishRate messages a second to their rooms,
// each client in turn. The worker also runs Abusers abusive clients, the
// abusers AbuseBase... of AbuseTotal in the cycle.
type SoakJob struct {
	RoomSize    int           `json:"room_size"`
	RoomBase    int           `json:"room_base"`
	PublishRate float64       `json:"publish_rate"`
	BulkEvery   int           `json:"bulk_every"`
	Abusers     int           `json:"abusers"`
	AbuseBase   int           `json:"abuse_base"`
	AbuseTotal  int           `json:"abuse_total"`
	Abuse       AbuseConfig   `json:"abuse"`
	Drain       time.Duration `json:"drain"` // after the end: longest wait for the last messages
}

// SoakStats are a soak worker's counts so far.
type SoakStats struct {
	Messages uint64 `json:"messages"` // room, news and bulk messages the well-behaved clients got
	Lost     uint64 `json:"lost"`     // missing from a publisher's sequence
	// LostBy splits Lost by topic: room messages, news, bulk.
	LostBy     [numTopics]uint64 `json:"lost_by"`
	Reordered  uint64            `json:"reordered"`  // older than, or the same as, one already seen
	Unexpected uint64            `json:"unexpected"` // messages a well-behaved client should not get
	Errors     uint64            `json:"errors"`     // error answers to their publishes
	Published  uint64            `json:"published"`  // room publishes sent
	Acks       uint64            `json:"acks"`       // answers {"op":"published"}
	Closed     int               `json:"closed"`     // well-behaved connections the server closed
	// Abuse counts the abusive attempts that ended: case -> outcome -> n.
	Abuse map[string]map[string]uint64 `json:"abuse"`
}

// The kinds of topic a well-behaved client follows, for SoakStats.LostBy.
const (
	topicRoom = iota
	topicNews
	topicBulk
	numTopics
)

// SoakResult is a soak worker's final report.
type SoakResult struct {
	SoakStats
	AbuseTimes  map[string]map[string]SparseHist `json:"abuse_times"`            // how long the attempts took
	AbuseErrors map[string]string                `json:"abuse_errors,omitempty"` // the first error of each case that had one
	Latency     SparseHist                       `json:"latency"`                // publish to delivery
	Drained     bool                             `json:"drained"`                // every message arrived before the drain ended
}

// SoakEnd ends a soak run: the runner sends "end " and this as JSON once it
// has stopped publishing, with how many messages it published per topic.
type SoakEnd struct {
	News uint64 `json:"news"`
	Bulk uint64 `json:"bulk"`
}

// SoakLine is one line a soak worker writes: a progress report every
// second, then the final Result.
type SoakLine struct {
	Progress *SoakStats `json:"progress,omitempty"`
	Result
}

// soakPath is the upgrade path of well-behaved client i.
func (j *SoakJob) soakPath(i int) string {
	p := fmt.Sprintf("/?topics=room.%d,news", j.RoomBase+i/j.RoomSize)
	if j.BulkEvery > 0 && i%j.BulkEvery == 0 {
		p += ",bulk"
	}
	return p
}

// soak is a soak worker's state. Only the poller's goroutine touches it,
// but for abuse, which the abusers share.
type soak struct {
	job      *SoakJob
	conns    []*Conn  // well-behaved clients by index
	roomSeen []uint64 // [i*RoomSize+m]: last sequence number client i got from member m of its room
	newsSeen []uint64
	bulkSeen []uint64
	sent     []uint64 // publishes by client i
	stats    SoakStats
	hist     Hist
	abuse    AbuseStats
	cursor   int
	frame    []byte
}

// soakRun runs the soak scenario after "go": the poller, the publishes,
// the abusers, a progress line every second, until the runner's "end"
// line (or, should it never come, the job's duration and a minute more);
// then it waits for the last messages and reports.
func (w *worker) soakRun(sc *bufio.Scanner, enc *json.Encoder) (stdinDone bool, err error) {
	j := w.job.Soak
	s := &soak{job: j, conns: make([]*Conn, w.job.Conns)}
	w.p.Each(func(c *Conn) { s.conns[c.Index] = c })
	s.roomSeen = make([]uint64, len(s.conns)*j.RoomSize)
	s.newsSeen = make([]uint64, len(s.conns))
	s.bulkSeen = make([]uint64, len(s.conns))
	s.sent = make([]uint64, len(s.conns))
	w.soak = s
	for _, c := range s.conns { // bytes that arrived with the handshake answers
		if c != nil && len(c.in) > 0 {
			rest := w.p.parse(c, c.in)
			c.in = append(c.in[:0], rest...)
		}
	}

	endc := make(chan SoakEnd, 1)
	go func() { // the runner's "end" line; stdin is the runner's until then
		var e SoakEnd
		if sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "end "); ok {
				_ = json.Unmarshal([]byte(rest), &e)
			}
		}
		endc <- e
	}()

	start := time.Now()
	abuseStop := make(chan struct{})
	var abusers sync.WaitGroup
	for k := range j.Abusers {
		a := &abuser{index: j.AbuseBase + k, total: j.AbuseTotal, addr: w.job.Addr, cfg: &j.Abuse, stats: &s.abuse, stop: abuseStop}
		if len(w.job.Sources) > 0 {
			a.src = w.job.Sources[k%len(w.job.Sources)]
		}
		abusers.Add(1)
		go func() { defer abusers.Done(); a.run(start) }()
	}

	var (
		stop       = make(chan struct{})
		end        *SoakEnd
		drainUntil time.Time
		lastReport = start
		lastCheck  time.Time
		gotEnd     = false
		selfStop   = time.NewTimer(w.job.Duration + time.Minute)
	)
	defer selfStop.Stop()
	w.p.Run(stop, func() {
		now := time.Now()
		if end == nil {
			select {
			case e := <-endc:
				end, gotEnd = &e, true
			case <-selfStop.C:
				end = &SoakEnd{}
			default:
			}
			if end != nil {
				close(abuseStop)
				drainUntil = now.Add(j.Drain)
			} else {
				s.publish(w.p, now.Sub(start))
			}
		}
		if now.Sub(lastReport) >= time.Second && end == nil {
			lastReport = now
			st := s.snapshot()
			_ = enc.Encode(SoakLine{Progress: &st})
		}
		if end != nil && now.Sub(lastCheck) >= 100*time.Millisecond {
			lastCheck = now
			if now.After(drainUntil) || s.missing(*end) == [numTopics]uint64{} {
				select {
				case <-stop:
				default:
					close(stop)
				}
			}
		}
	})
	waitGroup(&abusers, 10*time.Second)

	res := Result{Connected: len(s.conns), RunNs: time.Since(start).Nanoseconds()}
	missing := s.missing(*end)
	sr := &SoakResult{Drained: missing == [numTopics]uint64{}}
	for t, n := range missing {
		s.stats.LostBy[t] += n
		s.stats.Lost += n
	}
	sr.SoakStats = s.snapshot()
	sr.AbuseTimes = s.abuse.Times()
	sr.AbuseErrors = s.abuse.Errors()
	sr.Latency = s.hist.ToSparse()
	res.Soak = sr
	if !gotEnd {
		res.FirstErr = "no end line from the runner"
	}
	return gotEnd, enc.Encode(res)
}

// waitGroup waits for wg, at most d.
func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// snapshot returns the counts so far, with the closed clients counted.
func (s *soak) snapshot() SoakStats {
	st := s.stats
	st.Closed = 0
	for _, c := range s.conns {
		if c == nil || c.Closed {
			st.Closed++
		}
	}
	st.Abuse = s.abuse.Counts()
	return st
}

// maxPublishesPerTick bounds the publishes one tick sends when it catches up.
const maxPublishesPerTick = 1000

// publish sends the room publishes due by elapsed, from each client in turn.
func (s *soak) publish(p *Poller, elapsed time.Duration) {
	due := uint64(elapsed.Seconds() * s.job.PublishRate)
	for n := 0; s.stats.Published < due && n < maxPublishesPerTick; n++ {
		i := s.cursor % len(s.conns)
		s.cursor++
		c := s.conns[i]
		if c == nil || c.Closed {
			continue
		}
		room, member := s.job.RoomBase+i/s.job.RoomSize, i%s.job.RoomSize
		s.sent[i]++
		s.stats.Published++
		payload := fmt.Appendf(s.frame[:0], `{"op":"publish","topic":"room.%d","data":"m %d %d %d %d"}`, room, room, member, s.sent[i], Now())
		s.frame = payload
		c.Send(p, ClientFrame(0x1, payload))
	}
}

// missing counts the messages the well-behaved clients still lack, by
// topic: from each member of their room, and of the news and bulk topics.
func (s *soak) missing(end SoakEnd) (n [numTopics]uint64) {
	rs := s.job.RoomSize
	for i := range s.conns {
		first := i / rs * rs
		for m := 0; m < rs && first+m < len(s.conns); m++ {
			if want, got := s.sent[first+m], s.roomSeen[i*rs+m]; want > got {
				n[topicRoom] += want - got
			}
		}
		if end.News > s.newsSeen[i] {
			n[topicNews] += end.News - s.newsSeen[i]
		}
		if s.job.BulkEvery > 0 && i%s.job.BulkEvery == 0 && end.Bulk > s.bulkSeen[i] {
			n[topicBulk] += end.Bulk - s.bulkSeen[i]
		}
	}
	return n
}

// onMessage checks one message a well-behaved client got. Room messages
// are "m ROOM MEMBER SEQ TIME", news "n SEQ TIME", bulk "b SEQ TIME ...";
// the answers to its publishes are JSON.
func (s *soak) onMessage(c *Conn, op byte, head []byte) {
	if op != 0x1 || len(head) == 0 {
		s.stats.Unexpected++
		return
	}
	var f [4]uint64
	switch head[0] {
	case 'm':
		room := s.job.RoomBase + c.Index/s.job.RoomSize
		if numbers(head[1:], f[:]) < 4 || int(f[0]) != room || int(f[1]) >= s.job.RoomSize {
			s.stats.Unexpected++
			return
		}
		s.check(topicRoom, &s.roomSeen[c.Index*s.job.RoomSize+int(f[1])], f[2], f[3])
	case 'n':
		if numbers(head[1:], f[:2]) < 2 {
			s.stats.Unexpected++
			return
		}
		s.check(topicNews, &s.newsSeen[c.Index], f[0], f[1])
	case 'b':
		if numbers(head[1:], f[:2]) < 2 {
			s.stats.Unexpected++
			return
		}
		s.check(topicBulk, &s.bulkSeen[c.Index], f[0], f[1])
	default:
		switch {
		case bytes.HasPrefix(head, []byte(`{"op":"published"`)):
			s.stats.Acks++
		case bytes.HasPrefix(head, []byte(`{"op":"error"`)):
			s.stats.Errors++
		default:
			s.stats.Unexpected++
		}
	}
}

// check takes sequence number seq, sent at ts (ns) to a topic of kind
// topic, against the last one seen from the same publisher.
func (s *soak) check(topic int, last *uint64, seq, ts uint64) {
	s.stats.Messages++
	switch {
	case seq == *last+1:
		*last = seq
	case seq <= *last:
		s.stats.Reordered++
	default:
		s.stats.Lost += seq - *last - 1
		s.stats.LostBy[topic] += seq - *last - 1
		*last = seq
	}
	s.hist.Record(time.Duration(Now() - int64(ts)))
}

// numbers parses the space-separated decimal numbers at the start of b into
// dst and returns how many it found; it stops at the first other byte.
func numbers(b []byte, dst []uint64) int {
	n := 0
	for i := 0; i < len(b) && n < len(dst); {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		j := i
		var v uint64
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			v = v*10 + uint64(b[j]-'0')
			j++
		}
		if j == i || (j < len(b) && b[j] != ' ') {
			return n
		}
		dst[n] = v
		n++
		i = j
	}
	return n
}
