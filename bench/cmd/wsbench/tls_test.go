package main

import (
	"crypto/tls"
	"image/color"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// TestReportTLS: with -tls each server has a ws and a wss column, in that
// order, and a wss run lands in its own column only.
func TestReportTLS(t *testing.T) {
	p := &plan{}
	if got := p.labels([]string{"wsd", "gws"}); !slices.Equal(got, []string{"wsd", "gws"}) {
		t.Fatalf("labels without -tls: %q", got)
	}
	p.tls = &tlsPlan{}
	labels := p.labels([]string{"wsd", "gws"})
	if !slices.Equal(labels, []string{"wsd", "wsd wss", "gws", "gws wss"}) {
		t.Fatalf("labels with -tls: %q", labels)
	}
	runs := []Run{
		{Server: "wsd", Scenario: "idle", Conns: 5000, Round: 1, OK: true, RSSPerConn: 2000},
		{Server: "wsd", Scenario: "idle", Conns: 5000, Round: 1, OK: true, RSSPerConn: 9000, TLS: true},
		{Server: "gws", Scenario: "idle", Conns: 5000, Round: 1, OK: true, RSSPerConn: 14000},
		{Server: "gws", Scenario: "idle", Conns: 5000, Round: 1, OK: false, Err: "closed", TLS: true},
	}
	md := report(map[string]any{}, runs, labels)
	for _, want := range []string{
		"| connections | size | load | wsd | wsd wss | gws | gws wss |",
		"| 5000 | - | - | 2000 | 9000 | 14k | failed |",
		"- gws wss idle n=5000",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestBarColor: without -tls the columns take the palette in order; with
// it each wss column is its server's colour, lighter.
func TestBarColor(t *testing.T) {
	plain := []string{"wsd", "gorilla", "gobwas", "gws", "nbio"}
	for i := range plain {
		if barColor(plain, i) != color.RGBAModel.Convert(palette[i]) {
			t.Errorf("column %d (%s): not palette[%d]", i, plain[i], i)
		}
	}
	both := (&plan{tls: &tlsPlan{}}).labels(plain)
	seen := map[color.Color]string{}
	for i, s := range both {
		c := barColor(both, i)
		if other, ok := seen[c]; ok {
			t.Errorf("%s and %s have the same colour", s, other)
		}
		seen[c] = s
		if strings.HasSuffix(s, " wss") {
			ws := barColor(both, i-1).(color.RGBA)
			if w := c.(color.RGBA); w.R < ws.R || w.G < ws.G || w.B < ws.B || w == ws {
				t.Errorf("%s %v is not a lighter %v", s, w, ws)
			}
		}
	}
}

// TestTLSPlan: the run's certificate loads as a pair, and the clients'
// configuration trusts it.
func TestTLSPlan(t *testing.T) {
	tp, err := newTLSPlan(false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		tp.cleanup()
		if _, err := os.Stat(tp.dir); !os.IsNotExist(err) {
			t.Errorf("cleanup left %s: %v", tp.dir, err)
		}
	}()
	pair, err := tls.LoadX509KeyPair(tp.cert, tp.key)
	if err != nil {
		t.Fatal(err)
	}
	spec := tlsSpec(&plan{tls: tp}, specs["gws"], true)
	args := spec.args("gws", "echo", "127.0.0.1:1", "127.0.0.1:2")
	if !slices.Contains(args, "-tls-cert") || !slices.Contains(args, tp.key) {
		t.Errorf("server arguments over wss: %q", args)
	}
	if plain := specs["gws"].args("gws", "echo", "127.0.0.1:1", "127.0.0.1:2"); slices.Contains(plain, "-tls-cert") {
		t.Errorf("the spec itself changed: %q", plain)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cfg, err := (&loadgen.TLSJob{RootPEM: tp.pem}).Config()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("a client trusting the run's certificate: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version %x", v)
	}
	c.Close()
}
