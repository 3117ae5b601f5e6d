package conformance

import (
	"bytes"
	"compress/flate"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	ws "github.com/wsdproject/wsd/internal/wstest"
)

// The data sets of groups 12 and 13, in the spirit of Autobahn's files
// (JSON, a bitmap, German prose, HTML, a PDF), generated: each is a few
// hundred KiB, deterministic, and cut into messages the way Autobahn does
// (message i of n bytes starts n*i bytes into the set, wrapping around).

// deflateSet is a data set of group 12 (and 13).
type deflateSet struct {
	group int // 12.<group>
	desc  string
	op    byte
	data  []byte

	mu      sync.Mutex
	samples map[[2]int][2][]byte // messages and their compressed form by (size, index)
}

// deflateSetSize is the size of every data set: larger than two of the
// largest messages, and odd, so that messages start at shifting offsets.
const deflateSetSize = 300_007

// deflateLevels are the compress/flate levels messages are compressed at,
// by message index: its fast matcher, greedy matching, Huffman codes only,
// stored blocks, and lazy matching. (The higher levels search longer and
// find the same kinds of matches.)
var deflateLevels = []int{flate.BestSpeed, 2, flate.HuffmanOnly, flate.NoCompression, 5}

// deflateSets returns the five data sets, 12.1 to 12.5.
var deflateSets = sync.OnceValue(func() []*deflateSet {
	return []*deflateSet{
		{group: 1, desc: "JSON records (text)", op: ws.OpText, data: jsonData()},
		{group: 2, desc: "8-bit grayscale bitmap (binary)", op: ws.OpBinary, data: bitmapData()},
		{group: 3, desc: "German verse, multi-byte UTF-8 (text)", op: ws.OpText, data: proseData()},
		{group: 4, desc: "HTML table, repetitive markup (text)", op: ws.OpText, data: htmlData()},
		{group: 5, desc: "PDF-like, mostly random streams (binary)", op: ws.OpBinary, data: pdfData()},
	}
})

// message returns message i of n bytes: a copy of the set from n*i on,
// wrapping around; for a text set, a code point cut at either end is
// replaced with '*'.
func (s *deflateSet) message(n, i int) []byte {
	b := make([]byte, n)
	start := n * i % len(s.data)
	for k := 0; k < n; {
		k += copy(b[k:], s.data[(start+k)%len(s.data):])
	}
	if s.op == ws.OpText {
		mendUTF8(b)
	}
	return b
}

// sample returns message i of n bytes and the message compressed with
// compress/flate at deflateLevels[i%5]; cases sending the same message
// share the work.
func (s *deflateSet) sample(n, i int) (p, z []byte) {
	s.mu.Lock()
	pz, ok := s.samples[[2]int{n, i}]
	s.mu.Unlock()
	if ok {
		return pz[0], pz[1]
	}
	p = s.message(n, i)
	z = deflateMessage(p, deflateLevels[i%len(deflateLevels)])
	s.mu.Lock()
	if s.samples == nil {
		s.samples = map[[2]int][2][]byte{}
	}
	s.samples[[2]int{n, i}] = [2][]byte{p, z}
	s.mu.Unlock()
	return p, z
}

// fill appends from gen until b holds deflateSetSize bytes, and cuts it
// there.
func fill(gen func(b *bytes.Buffer)) []byte {
	var b bytes.Buffer
	for b.Len() < deflateSetSize {
		gen(&b)
	}
	return b.Bytes()[:deflateSetSize]
}

func jsonData() []byte {
	rng := rand.New(rand.NewPCG(12, 1))
	users := []string{"alice", "bob", "carol", "dave", "eve", "mallory", "trent", "zoë", "jürgen", "ñandú", "łukasz", "åsa"}
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua")
	id := 0
	b := fill(func(b *bytes.Buffer) {
		id++
		text := make([]string, 3+rng.IntN(8))
		for i := range text {
			text[i] = words[rng.IntN(len(words))]
		}
		fmt.Fprintf(b, `{"id": %d, "user": %q, "active": %t, "score": %.4f, "tags": [%q, %q], "text": %q, "ts": "2026-%02d-%02dT%02d:%02d:%02dZ"},`+"\n",
			id, users[rng.IntN(len(users))], rng.IntN(2) == 0, rng.Float64()*1000, words[rng.IntN(len(words))], users[rng.IntN(len(users))],
			strings.Join(text, " "), 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60))
	})
	return b
}

func bitmapData() []byte {
	rng := rand.New(rand.NewPCG(12, 2))
	const width = 512
	b := []byte("BM\x36\x04\x04\x00\x00\x00\x00\x00\x36\x04\x00\x00")
	for len(b) < deflateSetSize {
		i := len(b)
		x, y := i%width, i/width
		v := (x*3+y*5)/4 + (x^y)&0x1f
		if rng.IntN(8) == 0 {
			v += rng.IntN(16)
		}
		b = append(b, byte(v))
	}
	return b
}

func proseData() []byte {
	rng := rand.New(rand.NewPCG(12, 3))
	words := strings.Fields("Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie durchaus studiert, mit heißem Bemühn. " +
		"Da steh ich nun, ich armer Tor! und bin so klug als wie zuvor; heiße Magister, heiße Doktor gar, und ziehe schon an die zehen Jahr " +
		"herauf, herab und quer und krumm meine Schüler an der Nase herum – und sehe, daß wir nichts wissen können! Das will mir schier " +
		"das Herz verbrennen. Zwar bin ich gescheiter als all die Laffen, Doktoren, Magister, Schreiber und Pfaffen; mich plagen keine " +
		"Skrupel noch Zweifel, fürchte mich weder vor Hölle noch Teufel – „Faust“ · Mephistopheles · Gretchen · Wagner · Äther · Übermut · Öde")
	line := 0
	return fill(func(b *bytes.Buffer) {
		line++
		n := 4 + rng.IntN(7)
		for i := range n {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		if line%9 == 0 {
			b.WriteString("\n\n")
		} else {
			b.WriteString(",\n")
		}
	})
}

func htmlData() []byte {
	rng := rand.New(rand.NewPCG(12, 4))
	row := 0
	return fill(func(b *bytes.Buffer) {
		row++
		if row%50 == 1 {
			fmt.Fprintf(b, "</tbody></table>\n<h2 id=\"s%d\">Section %d</h2>\n<table class=\"data\"><thead><tr><th>#</th><th>Item</th><th>Price</th><th>Stock</th></tr></thead><tbody>\n", row/50, row/50)
		}
		fmt.Fprintf(b, "<tr class=\"%s\"><td>%d</td><td><a href=\"/items/%d\">Item %d</a></td><td class=\"num\">%d.%02d €</td><td>%s</td></tr>\n",
			[]string{"odd", "even"}[row%2], row, row, row, rng.IntN(500), rng.IntN(100), []string{"in stock", "sold out", "2–3 days"}[rng.IntN(3)])
	})
}

func pdfData() []byte {
	rng := rand.New(rand.NewPCG(12, 5))
	obj := 0
	b := fill(func(b *bytes.Buffer) {
		obj++
		n := 500 + rng.IntN(4000)
		fmt.Fprintf(b, "%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n", obj, n)
		for range n {
			b.WriteByte(byte(rng.Uint32()))
		}
		b.WriteString("\nendstream\nendobj\n")
	})
	copy(b, "%PDF-1.7\n")
	return b
}
