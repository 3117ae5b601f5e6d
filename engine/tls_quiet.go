package engine

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// Letting crypto/tls's input buffers go when a wss connection is quiet.
//
// A tls.Conn reads records into its input buffer (rawInput, a
// bytes.Buffer), decrypts them in place, and keeps that buffer for good:
// it never shrinks. Its size is set by the largest record read and by
// bytes.Buffer's growth (the record and 512 bytes, or twice the buffer,
// whichever is more). Once a connection has received 16 KiB records it
// holds 18 KiB when they came full-size at once (browsers), and 32 KiB
// when they grew to full size gradually (Go's crypto/tls client: 1 KiB,
// then 2, 3, ... KiB, doubling the buffer up to 16 KiB, one byte short of
// a full record, then to 32 KiB). Its handshake buffer (hand) keeps the
// largest handshake message, 1.5 KiB with TLS 1.3. Feeding records one at
// a time (recordCut) does not change this: crypto/tls reads one record at
// a time anyway, and asks for 512 bytes more than it needs.
//
// crypto/tls has no way to give them back, so the engine does it: a
// connection whose tls.Conn holds buffers after a read is put in its
// loop's list (tlsQuiet), and at each tick of the engine the loop lets the
// buffers of those that read nothing during the tick before go, once they
// hold no bytes: the zero bytes.Buffer crypto/tls starts from, which
// grows again at the next record (two allocations). Only the loop reads a
// connection's tls.Conn once its handshake is done, so nothing else
// touches these buffers meanwhile. The fields are found by name and type
// when the package starts; if a Go release changes them, nothing is let go
// (TestTLSInternals says so), and crypto/tls keeps its buffers as before.

// tlsBufs locates the buffers in a tls.Conn.
var tlsBufs = findTLSBuffers()

type tlsBuffers struct {
	raw, input, hand uintptr // offsets of rawInput, input and hand
	ok               bool
}

func findTLSBuffers() tlsBuffers {
	t := reflect.TypeFor[tls.Conn]()
	raw, ok1 := t.FieldByName("rawInput")
	input, ok2 := t.FieldByName("input")
	hand, ok3 := t.FieldByName("hand")
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	if !ok1 || !ok2 || !ok3 || raw.Type != buf || input.Type != rd || hand.Type != buf {
		return tlsBuffers{}
	}
	return tlsBuffers{raw: raw.Offset, input: input.Offset, hand: hand.Offset, ok: true}
}

// buffers returns rec's input buffers, or nils when rec is not a tls.Conn
// or crypto/tls's fields are not the ones known.
func (b *tlsBuffers) buffers(rec recordLayer) (raw *bytes.Buffer, input *bytes.Reader, hand *bytes.Buffer) {
	tc, ok := rec.(*tls.Conn)
	if !ok || !b.ok {
		return nil, nil, nil
	}
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, b.raw)), (*bytes.Reader)(unsafe.Add(p, b.input)), (*bytes.Buffer)(unsafe.Add(p, b.hand))
}

// tlsHeld returns the capacity of the input and handshake buffers rec's
// tls.Conn keeps; 0 when they are not known. Loop only.
func tlsHeld(rec recordLayer) int {
	raw, _, hand := tlsBufs.buffers(rec)
	if raw == nil {
		return 0
	}
	return raw.Cap() + hand.Cap()
}

// tlsRelease lets rec's input and handshake buffers go if they hold no
// bytes, and reports whether none is kept now. Loop only, once the
// handshake is done.
func tlsRelease(rec recordLayer) bool {
	raw, input, hand := tlsBufs.buffers(rec)
	if raw == nil {
		return true
	}
	if raw.Len() == 0 && input.Len() == 0 {
		*raw = bytes.Buffer{}
		input.Reset(nil) // it may still point into raw's memory
	}
	if hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
	return raw.Cap() == 0 && hand.Cap() == 0
}

// noteRead marks t as read during this tick, and puts it in its loop's
// list if its tls.Conn keeps buffers. Loop only, after a read.
func (t *tlsConn) noteRead(l *Loop) {
	t.busy = true
	if !t.listed && t.phase == tlsOpen && tlsHeld(t.rec) > 0 {
		t.listed = true
		l.tlsQuiet = append(l.tlsQuiet, t)
		l.tlsListed.Add(1)
	}
}

// releaseQuietTLS runs at each tick: the connections of the list that read
// nothing since the last tick let crypto/tls's buffers go, and leave the
// list (closed ones too). Loop only.
func (l *Loop) releaseQuietTLS() {
	kept := l.tlsQuiet[:0]
	for i, t := range l.tlsQuiet {
		l.tlsQuiet[i] = nil
		switch {
		case t.c.state == stateClosed || t.c.tlsConn() != t:
		case t.busy:
			t.busy = false
			kept = append(kept, t)
			continue
		case !tlsRelease(t.rec):
			kept = append(kept, t) // bytes of a record not complete yet: at a later tick
			continue
		}
		t.listed = false
	}
	l.tlsListed.Add(int64(len(kept) - len(l.tlsQuiet)))
	l.tlsQuiet = kept
	if len(kept) == 0 && cap(kept) > maxKeptQuiet {
		l.tlsQuiet = nil // a burst of connections grew it: let it go
	}
}

// maxKeptQuiet is the largest tlsQuiet list a loop keeps once empty.
const maxKeptQuiet = 1024
