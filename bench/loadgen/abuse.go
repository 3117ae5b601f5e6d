package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The abuses, in the order every abusive client cycles through them.
const (
	Flood      = iota // send publishes as fast as possible, never read
	NonReading        // subscribe to busy topics, never read
	Slowloris         // send the upgrade request a line at a time, never finish it
	Garbage           // send a frame that breaks RFC 6455
	Oversized         // send a message over the server's size limit
	Churn             // connect and disconnect, over and over
	NumAbuses
)

// AbuseNames names the abuses, by the constants above.
var AbuseNames = [NumAbuses]string{"flood", "nonreading", "slowloris", "garbage", "oversized", "churn"}

// AbuseCycle is the schedule of the abusive clients: each spends Slots[k]
// on abuse k, in order, and starts over. Abuser i of n starts i/n of the
// way into the cycle, so that at every moment each abuse has its share of
// the abusers (n×Slots[k]/Period, give or take one) and the load they put
// on the server does not swing with the schedule.
type AbuseCycle struct {
	Slots [NumAbuses]time.Duration `json:"slots"`
}

// Period is the length of one whole cycle.
func (c AbuseCycle) Period() time.Duration {
	var p time.Duration
	for _, s := range c.Slots {
		p += s
	}
	return p
}

// At returns the abuse that abuser i of n does at time t after the start,
// and how much of its slot is left.
func (c AbuseCycle) At(i, n int, t time.Duration) (kind int, left time.Duration) {
	p := c.Period()
	if p <= 0 || n <= 0 {
		return Churn, 0
	}
	offset := time.Duration(int64(p) * int64(i%n) / int64(n))
	pos := (t + offset) % p
	for k, s := range c.Slots {
		if pos < s {
			return k, s - pos
		}
		pos -= s
	}
	return NumAbuses - 1, 0 // not reached: pos < p
}

// AbuseConfig is what the abusive clients need to know of the server and
// of the schedule.
type AbuseConfig struct {
	Cycle AbuseCycle `json:"cycle"`
	// Bounds are how long the server may take to close a flooding, a
	// non-reading and a slowloris client; an attempt still open then ends
	// with outcome "timeout", which the scenario counts as unexpected.
	// They must be shorter than the slots, or attempts end "cut" instead.
	Bounds [NumAbuses]time.Duration `json:"bounds"`
	// MaxMessageSize is the server's limit: oversized messages exceed it.
	MaxMessageSize int `json:"max_message_size"`
	// Pause separates two attempts of an abuse in its slot (there is one
	// flood a slot); ChurnEvery separates two churn connections.
	Pause      time.Duration `json:"pause"`
	ChurnEvery time.Duration `json:"churn_every"`
	// NonReadingPath and ChurnPath are the upgrade paths (with their
	// topics) of non-reading and churning clients; churners cycle through
	// ChurnRooms rooms (room.0, room.1, ...) on top.
	NonReadingPath string `json:"nonreading_path"`
	ChurnPath      string `json:"churn_path"`
	ChurnRooms     int    `json:"churn_rooms"`
	// FloodFrame is one message a flooding client sends again and again.
	FloodFrame string `json:"flood_frame"`
}

// Variants of the garbage, oversized and churn abuses, tried in turn. Each
// is reported as its own case, "garbage/opcode" and so on.
var (
	garbageVariants   = []string{"opcode", "unmasked", "utf8", "rsv", "ping-size"}
	garbageCodes      = []int{1002, 1002, 1007, 1002, 1002}
	oversizedVariants = []string{"frame", "fragments"}
	churnVariants     = []string{"fin", "rst", "close", "half-upgrade"}
)

// Outcomes of one abusive attempt, seen from the client.
const (
	OutReset   = "reset"   // the server reset the connection; no close frame was read
	OutEOF     = "eof"     // the server closed the connection; no close frame was read
	OutCut     = "cut"     // still open when the slot or the run ended: the client closed it
	OutTimeout = "timeout" // still open at the abuse's bound: the server did not act
	OutError   = "error"   // the client could not connect or upgrade
	OutOK      = "ok"      // churn: opened and closed by the client as planned
)

// outClose and outHTTP are the outcomes of a close frame and of an HTTP
// answer.
func outClose(code int) string  { return "close " + strconv.Itoa(code) }
func outHTTP(status int) string { return "http " + strconv.Itoa(status) }

// AbuseExpected reports whether outcome is one the scenario accepts for
// case name ("flood", "garbage/utf8", ...): the server closed the
// connection the way it should, or the attempt was cut short by the
// schedule before its bound. A client that does not read cannot see a
// close frame queued behind the data it did not read, so for those the
// connection's end (reset or EOF) is the server's answer.
func AbuseExpected(name, outcome string) bool {
	if outcome == OutCut {
		return true
	}
	kind, variant, _ := bytes.Cut([]byte(name), []byte("/"))
	switch string(kind) {
	case "flood", "nonreading":
		return outcome == OutReset || outcome == OutEOF || outcome == outClose(1008) || outcome == outClose(1013)
	case "slowloris":
		return outcome == OutReset || outcome == OutEOF || outcome == outHTTP(408)
	case "garbage":
		for i, v := range garbageVariants {
			if v == string(variant) {
				return outcome == outClose(garbageCodes[i])
			}
		}
	case "oversized":
		return outcome == outClose(1009)
	case "churn":
		if string(variant) == "close" {
			return outcome == outClose(1000)
		}
		return outcome == OutOK
	}
	return false
}

// AbuseStats counts the outcomes of abusive attempts by case and outcome,
// with how long each took. Safe for concurrent use.
type AbuseStats struct {
	mu     sync.Mutex
	count  map[string]map[string]uint64
	times  map[string]map[string]*Hist
	errors map[string]string // the first error of each case
}

// RecordError keeps err as the first error of case name, if it is.
func (s *AbuseStats) RecordError(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errors == nil {
		s.errors = map[string]string{}
	}
	if _, ok := s.errors[name]; !ok {
		s.errors[name] = err.Error()
	}
}

// Errors returns the first error of each case that had one.
func (s *AbuseStats) Errors() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.errors))
	for k, v := range s.errors {
		out[k] = v
	}
	return out
}

// Record adds one attempt of case name that ended with outcome after d.
func (s *AbuseStats) Record(name, outcome string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = map[string]map[string]uint64{}
		s.times = map[string]map[string]*Hist{}
	}
	if s.count[name] == nil {
		s.count[name] = map[string]uint64{}
		s.times[name] = map[string]*Hist{}
	}
	s.count[name][outcome]++
	h := s.times[name][outcome]
	if h == nil {
		h = new(Hist)
		s.times[name][outcome] = h
	}
	h.Record(d)
}

// Counts returns a copy of the counts: case -> outcome -> attempts.
func (s *AbuseStats) Counts() map[string]map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyNested(s.count, func(n uint64) uint64 { return n })
}

// Times returns the durations: case -> outcome -> histogram.
func (s *AbuseStats) Times() map[string]map[string]SparseHist {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyNested(s.times, (*Hist).ToSparse)
}

// copyNested copies a case -> outcome -> value map, converting the values.
func copyNested[V, W any](m map[string]map[string]V, conv func(V) W) map[string]map[string]W {
	out := make(map[string]map[string]W, len(m))
	for name, inner := range m {
		out[name] = make(map[string]W, len(inner))
		for o, v := range inner {
			out[name][o] = conv(v)
		}
	}
	return out
}

// abuser is one abusive client. It runs on its own goroutine with blocking
// sockets whose every wait is bounded, checking stop between waits.
type abuser struct {
	index, total int // its place in the cycle
	src, addr    string
	cfg          *AbuseConfig
	stats        *AbuseStats
	stop         <-chan struct{}
	turn         [NumAbuses]int // variant to try next, per abuse
	failure      error          // why the current attempt failed, if it did
}

// run cycles through the abuses from start until stop is closed.
func (a *abuser) run(start time.Time) {
	for !a.stopped() {
		kind, left := a.cfg.Cycle.At(a.index, a.total, time.Since(start))
		slotEnd := time.Now().Add(left)
		if left < 100*time.Millisecond { // too little of the slot to start anything
			a.sleepUntil(slotEnd)
			continue
		}
		switch kind {
		case Flood: // one a slot: each flood costs the server a burst of CPU
			a.attempt(kind, slotEnd)
			a.sleepUntil(slotEnd)
		default: // again and again until the slot ends
			for time.Now().Before(slotEnd) && !a.stopped() {
				a.attempt(kind, slotEnd)
				pause := a.cfg.Pause
				if kind == Churn {
					pause = a.cfg.ChurnEvery
				}
				a.sleepUntil(minTime(slotEnd, time.Now().Add(pause)))
			}
		}
	}
}

func (a *abuser) stopped() bool {
	select {
	case <-a.stop:
		return true
	default:
		return false
	}
}

// sleepUntil waits until t or until stop.
func (a *abuser) sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-a.stop:
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// attempt makes one attempt of abuse kind, which must end by slotEnd, and
// records its outcome.
func (a *abuser) attempt(kind int, slotEnd time.Time) {
	name := AbuseNames[kind]
	variant := a.turn[kind]
	a.turn[kind]++
	var (
		outcome string
		d       time.Duration
	)
	switch kind {
	case Flood:
		outcome, d = a.flood(slotEnd)
	case NonReading:
		outcome, d = a.nonReading(slotEnd)
	case Slowloris:
		outcome, d = a.slowloris(slotEnd)
	case Garbage:
		variant %= len(garbageVariants)
		name += "/" + garbageVariants[variant]
		outcome, d = a.garbage(variant)
	case Oversized:
		variant %= len(oversizedVariants)
		name += "/" + oversizedVariants[variant]
		outcome, d = a.oversized(variant)
	case Churn:
		variant %= len(churnVariants)
		name += "/" + churnVariants[variant]
		outcome, d = a.churn(variant)
	}
	a.stats.Record(name, outcome, d)
	if a.failure != nil {
		a.stats.RecordError(name, a.failure)
		a.failure = nil
	}
}

// limit is the time an attempt of kind started at start may run: its bound
// (reached: "timeout") or the slot's end (reached: "cut"), whichever is
// first.
func (a *abuser) limit(kind int, start, slotEnd time.Time) (time.Time, string) {
	if b := start.Add(a.cfg.Bounds[kind]); a.cfg.Bounds[kind] > 0 && b.Before(slotEnd) {
		return b, OutTimeout
	}
	return slotEnd, OutCut
}

// step is how long a blocking call of an abuser may wait before it looks
// at the clock and at stop again.
const step = 200 * time.Millisecond

const dialTimeout = 10 * time.Second // as the well-behaved clients' Dial

// flood upgrades, then writes publish messages as fast as the socket takes
// them and reads nothing, until the server ends the connection.
func (a *abuser) flood(slotEnd time.Time) (string, time.Duration) {
	fd, rest, err := dialUpgrade(a.src, a.addr, "/", dialTimeout, 0)
	if err != nil {
		return a.failed(err)
	}
	defer unix.Close(fd)
	setTimeouts(fd, step)
	frame := ClientFrame(0x1, []byte(a.cfg.FloodFrame))
	buf := bytes.Repeat(frame, max(1, (64<<10)/len(frame)))
	start := time.Now()
	end, late := a.limit(Flood, start, slotEnd)
	for off := 0; ; { // buf holds whole frames: a write resumes where the last one stopped
		if a.stopped() {
			return OutCut, time.Since(start)
		}
		if time.Now().After(end) {
			return late, time.Since(start)
		}
		n, err := unix.Write(fd, buf[off:])
		if n > 0 {
			off = (off + n) % len(buf)
		}
		switch err {
		case nil, unix.EAGAIN, unix.EINTR: // EAGAIN: the send timeout; the server reads no more
			continue
		}
		return a.ended(fd, rest, start)
	}
}

// nonReading upgrades with a small receive buffer on busy topics and never
// reads; once a second it writes an unsolicited pong (RFC 6455 5.5.3: the
// server answers nothing, and does not ping a client it hears from), which
// is how it learns that the server ended the connection: the server's FIN
// cannot reach a full window, its reset to the pong can. What closes it is
// then up to the server's limits on what it holds for the client.
func (a *abuser) nonReading(slotEnd time.Time) (string, time.Duration) {
	start := time.Now()
	fd, rest, err := dialUpgrade(a.src, a.addr, a.cfg.NonReadingPath, dialTimeout, 4096)
	if err != nil {
		return a.failed(err)
	}
	defer unix.Close(fd)
	setTimeouts(fd, step)
	pong := ClientFrame(0xA, []byte("still here"))
	end, late := a.limit(NonReading, start, slotEnd)
	var pend []byte // the rest of a pong the socket did not take
	for next := start; ; {
		if a.stopped() {
			return OutCut, time.Since(start)
		}
		if time.Now().After(end) {
			return late, time.Since(start)
		}
		if time.Now().After(next) {
			next = next.Add(time.Second)
			pend = append(pend, pong...)
		}
		if len(pend) > 0 {
			n, err := unix.Write(fd, pend)
			if n > 0 {
				pend = pend[:copy(pend, pend[n:])]
			}
			if err != nil && err != unix.EAGAIN && err != unix.EINTR {
				return a.ended(fd, rest, start)
			}
		}
		if hungUp(fd, step) {
			return a.ended(fd, rest, start)
		}
	}
}

// slowloris sends an upgrade request one header line every two seconds,
// never its end, until the server gives up on it.
func (a *abuser) slowloris(slotEnd time.Time) (string, time.Duration) {
	start := time.Now()
	fd, err := dialTCP(a.src, a.addr, dialTimeout, 0)
	if err != nil {
		return a.failed(err)
	}
	defer unix.Close(fd)
	setTimeouts(fd, step)
	end, late := a.limit(Slowloris, start, slotEnd)
	_, _ = unix.Write(fd, []byte("GET /?topics=news HTTP/1.1\r\nHost: "+a.addr+"\r\n"))
	for line, next := 0, start.Add(2*time.Second); ; {
		if a.stopped() {
			return OutCut, time.Since(start)
		}
		if time.Now().After(end) {
			return late, time.Since(start)
		}
		if time.Now().After(next) {
			next = next.Add(2 * time.Second)
			line++
			if _, err := unix.Write(fd, fmt.Appendf(nil, "X-Slow-%d: 1\r\n", line)); err != nil && err != unix.EAGAIN && err != unix.EINTR {
				return a.ended(fd, nil, start)
			}
		}
		if readable(fd, step) {
			var b [512]byte
			n, err := unix.Read(fd, b[:])
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if n > 0 {
				if status, ok := httpStatus(b[:n]); ok {
					return outHTTP(status), time.Since(start)
				}
			}
			if err != nil {
				return OutReset, time.Since(start)
			}
			return OutEOF, time.Since(start)
		}
	}
}

// garbage upgrades, sends one frame that breaks RFC 6455, and reads the
// server's close frame.
func (a *abuser) garbage(variant int) (string, time.Duration) {
	var frame []byte
	switch garbageVariants[variant] {
	case "opcode": // reserved opcode 0x3
		frame = ClientFrame(0x3, []byte("reserved"))
	case "unmasked": // a client frame without a mask
		frame = append([]byte{0x81, 5}, "hello"...)
	case "utf8": // a text message that is not UTF-8
		frame = ClientFrame(0x1, []byte{'o', 'k', 0xff, 0xfe, 0xfd})
	case "rsv": // RSV1 without an extension that defines it
		frame = ClientFrame(0x1, []byte("rsv1"))
		frame[0] |= 0x40
	case "ping-size": // a control frame over 125 bytes
		frame = ClientFrame(0x9, make([]byte, 126))
	}
	return a.sendBad(frame)
}

// oversized sends a message one byte over the server's limit: in one frame
// (refused at its header) or in two fragments that are each under it.
func (a *abuser) oversized(variant int) (string, time.Duration) {
	limit := a.cfg.MaxMessageSize
	var b []byte
	switch oversizedVariants[variant] {
	case "frame": // the header and the first KiB: the header alone must be refused
		f := ClientFrame(0x2, make([]byte, limit+1))
		b = f[:len(f)-(limit+1)+1024]
	case "fragments":
		half := limit/2 + 1
		b = ClientFrame(0x2, make([]byte, half))
		b[0] &^= 0x80 // not the last fragment
		b = append(b, ClientFrame(0x0, make([]byte, half))...)
	}
	return a.sendBad(b)
}

// sendBad upgrades, writes b and reads the server's close frame, answers
// it, and waits for the end of the connection.
func (a *abuser) sendBad(b []byte) (string, time.Duration) {
	fd, rest, err := dialUpgrade(a.src, a.addr, "/", dialTimeout, 0)
	if err != nil {
		return a.failed(err)
	}
	defer unix.Close(fd)
	setTimeouts(fd, step)
	start := time.Now()
	if err := writeAll(fd, b); err != nil && err != unix.EAGAIN {
		return a.ended(fd, rest, start)
	}
	code, out := readClose(fd, rest, time.Now().Add(5*time.Second), a.stop)
	if code > 0 {
		d := time.Since(start)
		_ = writeAll(fd, ClientFrame(0x8, binary.BigEndian.AppendUint16(nil, uint16(code))))
		waitEOF(fd, time.Now().Add(2*time.Second))
		return outClose(code), d
	}
	return out, time.Since(start)
}

// churn opens one connection (or half of one) and ends it, each variant in
// its own way.
func (a *abuser) churn(variant int) (string, time.Duration) {
	start := time.Now()
	path := a.cfg.ChurnPath
	if a.cfg.ChurnRooms > 0 {
		path += fmt.Sprintf(",room.%d", (a.index+a.turn[Churn])%a.cfg.ChurnRooms)
	}
	if churnVariants[variant] == "half-upgrade" {
		fd, err := dialTCP(a.src, a.addr, dialTimeout, 0)
		if err != nil {
			return a.failed(err)
		}
		req := upgradeRequest(a.addr, path)
		_ = writeAll(fd, req[:len(req)/2])
		unix.Close(fd)
		return OutOK, time.Since(start)
	}
	fd, rest, err := dialUpgrade(a.src, a.addr, path, dialTimeout, 0)
	if err != nil {
		return a.failed(err)
	}
	defer unix.Close(fd)
	switch churnVariants[variant] {
	case "rst": // SO_LINGER 0: close sends a reset
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	case "close": // the close handshake: the server echoes 1000
		setTimeouts(fd, step)
		_ = writeAll(fd, ClientFrame(0x8, binary.BigEndian.AppendUint16(nil, 1000)))
		code, out := readClose(fd, rest, time.Now().Add(5*time.Second), a.stop)
		if code > 0 {
			return outClose(code), time.Since(start)
		}
		return out, time.Since(start)
	}
	return OutOK, time.Since(start)
}

// failed records err, an attempt's failure to connect or to upgrade.
func (a *abuser) failed(err error) (string, time.Duration) {
	a.failure = err
	return OutError, 0
}

// ended is the outcome of a connection the server ended (a write failed or
// the peer hung up): the close code if a close frame can still be read
// (after pending, the bytes that came with the upgrade answer), else reset
// or EOF.
func (a *abuser) ended(fd int, pending []byte, start time.Time) (string, time.Duration) {
	d := time.Since(start)
	code, out := readClose(fd, pending, time.Now().Add(time.Second), a.stop)
	if code > 0 {
		return outClose(code), d
	}
	if out == OutCut || out == OutTimeout {
		out = OutEOF // the end was seen; nothing more arrived
	}
	return out, d
}

// readClose reads server frames from fd (after the bytes in pending) until
// a close frame, the end of the connection, deadline or stop. It returns
// the close code (1005 for a close frame without one), or 0 and OutEOF,
// OutReset, OutTimeout or OutCut.
func readClose(fd int, pending []byte, deadline time.Time, stop <-chan struct{}) (int, string) {
	buf := append([]byte(nil), pending...)
	tmp := make([]byte, 64<<10)
	for {
		for len(buf) >= 2 {
			op, payload, n := serverFrame(buf)
			if n == 0 {
				break
			}
			if op == 0x8 {
				if len(payload) >= 2 {
					return int(binary.BigEndian.Uint16(payload)), ""
				}
				return 1005, ""
			}
			buf = buf[n:]
		}
		select {
		case <-stop:
			return 0, OutCut
		default:
		}
		if time.Now().After(deadline) {
			return 0, OutTimeout
		}
		if !readable(fd, step) {
			continue
		}
		n, err := unix.Read(fd, tmp)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil:
			return 0, OutReset
		case n == 0:
			return 0, OutEOF
		default:
			buf = append(buf, tmp[:n]...)
		}
	}
}

// serverFrame parses one unmasked frame at the start of b: its opcode,
// payload and length, or n 0 when b holds only part of it.
func serverFrame(b []byte) (op byte, payload []byte, n int) {
	if len(b) < 2 {
		return 0, nil, 0
	}
	hl, ln := 2, int(b[1]&0x7f)
	switch ln {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0
		}
		hl, ln = 4, int(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		if len(b) < 10 {
			return 0, nil, 0
		}
		hl, ln = 10, int(binary.BigEndian.Uint64(b[2:10]))
	}
	if b[1]&0x80 != 0 { // a masked server frame: not expected, skip the key
		hl += 4
	}
	if ln < 0 || len(b) < hl+ln {
		return 0, nil, 0
	}
	return b[0] & 0x0f, b[hl : hl+ln], hl + ln
}

// httpStatus reads the status code of an HTTP/1.1 answer at the start of b.
func httpStatus(b []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("HTTP/1.1 "))
	if !ok || len(rest) < 3 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:3]))
	return n, err == nil
}

// waitEOF reads and discards until the peer closes or deadline.
func waitEOF(fd int, deadline time.Time) {
	var tmp [4096]byte
	for time.Now().Before(deadline) {
		if !readable(fd, step) {
			continue
		}
		n, err := unix.Read(fd, tmp[:])
		if (err != nil && err != unix.EAGAIN && err != unix.EINTR) || (err == nil && n == 0) {
			return
		}
	}
}

// setTimeouts bounds each blocking read and write of fd to d.
func setTimeouts(fd int, d time.Duration) {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
}

// readable waits up to d for fd to have bytes to read, an end or an error.
func readable(fd int, d time.Duration) bool {
	return pollFor(fd, unix.POLLIN|unix.POLLRDHUP, d)
}

// hungUp waits up to d for the peer of fd to end the connection, without
// looking at the bytes that wait to be read.
func hungUp(fd int, d time.Duration) bool {
	return pollFor(fd, unix.POLLRDHUP, d)
}

func pollFor(fd int, events int16, d time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(pfd, int(d.Milliseconds()))
	return err == nil && n > 0 && pfd[0].Revents != 0
}
