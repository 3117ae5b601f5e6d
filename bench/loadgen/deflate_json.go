package loadgen

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"
)

// JSONMinSize is the smallest message JSONPayload writes.
const JSONMinSize = 256

// quoteSymbols are the instruments of JSONPayload's quotes.
var quoteSymbols = []string{
	"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "AVGO", "JPM",
	"LLY", "V", "UNH", "XOM", "MA", "COST", "HD", "PG", "JNJ", "ABBV",
	"NFLX", "CRM", "BAC", "KO", "AMD", "PEP", "TMO", "ORCL", "ADBE", "WMT",
}

// JSONPayload writes a realistic push message of exactly size bytes (at
// least JSONMinSize) into dst: a JSON object that starts with the sequence
// number and the send time in ns (`{"seq":N,"ts":T,`, read back by
// BroadcastStamp from a message's first HeadSize bytes), then a batch of
// market quotes whose symbols, prices, volumes and times vary from message
// to message as a feed's do; spaces before the closing "]}" make up the
// size. Such JSON compresses about as real notifications do (level 1: to
// roughly 40%), unlike padding.
func JSONPayload(dst []byte, seq uint64, size int) []byte {
	size = max(size, JSONMinSize)
	now := Now()
	dst = append(dst[:0], `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, now, 10)
	dst = append(dst, `,"type":"quotes","feed":"eu-west-1/level1","items":[`...)
	rnd := seq*0x9e3779b97f4a7c15 + 1
	next := func(n uint64) uint64 { // xorshift: the same message for the same seq
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return rnd % n
	}
	stamp := time.Unix(0, now).UTC()
	var item []byte
	for first := true; ; first = false {
		item = item[:0]
		if !first {
			item = append(item, ',')
		}
		price := 20 + next(90000)
		item = append(item, `{"symbol":"`...)
		item = append(item, quoteSymbols[next(uint64(len(quoteSymbols)))]...)
		item = append(item, `","bid":`...)
		item = appendCents(item, price)
		item = append(item, `,"ask":`...)
		item = appendCents(item, price+1+next(9))
		item = append(item, `,"volume":`...)
		item = strconv.AppendUint(item, next(5000000), 10)
		item = append(item, `,"change":`...)
		if next(2) == 0 {
			item = append(item, '-')
		}
		item = appendCents(item, next(800))
		item = append(item, `,"time":"`...)
		item = stamp.Add(-time.Duration(next(5000))*time.Millisecond).AppendFormat(item, "2006-01-02T15:04:05.000Z")
		item = append(item, `"}`...)
		if len(dst)+len(item)+2 > size {
			break
		}
		dst = append(dst, item...)
	}
	for len(dst)+2 < size {
		dst = append(dst, ' ')
	}
	return append(dst, "]}"...)
}

// appendCents appends c/100 with two decimals.
func appendCents(b []byte, c uint64) []byte {
	b = strconv.AppendUint(b, c/100, 10)
	return append(b, '.', byte('0'+c%100/10), byte('0'+c%10))
}

// BroadcastStamp reads the sequence number and send time (ns) from the
// first bytes of a broadcast message, as JSONPayload or BroadcastPayload
// wrote them.
func BroadcastStamp(head []byte) (seq uint64, ts int64, ok bool) {
	if rest, isJSON := bytes.CutPrefix(head, []byte(`{"seq":`)); isJSON {
		s, rest, ok1 := cutDigits(rest)
		rest, ok2 := bytes.CutPrefix(rest, []byte(`,"ts":`))
		t, _, ok3 := cutDigits(rest)
		return s, int64(t), ok1 && ok2 && ok3
	}
	if len(head) < 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(head), int64(binary.BigEndian.Uint64(head[8:])), true
}

// cutDigits parses the decimal digits at the start of b (followed by a
// comma, so that a number cut short by the head is not taken).
func cutDigits(b []byte) (uint64, []byte, bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ',' {
		return 0, b, false
	}
	if i > 19 { // past uint64
		return 0, b, false
	}
	var n uint64
	for _, d := range b[:i] {
		n = n*10 + uint64(d-'0')
	}
	return n, b[i:], true
}
