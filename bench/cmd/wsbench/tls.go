package main

import (
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// wss: with -tls every case runs twice against each server, over ws and
// then over wss, so that the report shows "wsd" and "wsd wss" side by side.
// The servers get a self-signed ECDSA P-256 certificate made at the start
// of the run (-tls-cert, -tls-key: the same flags for wsd and the peers);
// the clients trust it, make a full handshake per connection (no session
// resumption) and take the TLS version and key exchange crypto/tls picks
// with the server (TLS 1.3 everywhere; X25519MLKEM768 with the servers on
// Go's crypto/tls, X25519 with nbio's fork, which has no ML-KEM; with
// -tls-x25519 the clients offer X25519 alone, so that every server does
// the same key exchange).

// tlsPlan is the certificate of a -tls run.
type tlsPlan struct {
	dir       string // holds cert.pem and key.pem
	cert, key string // their paths
	pem       string // the certificate, for the clients to trust
	x25519    bool   // -tls-x25519: the clients offer X25519 alone
}

// newTLSPlan makes the run's certificate and writes it to a new
// directory; remove it with cleanup. x25519 is -tls-x25519.
func newTLSPlan(x25519 bool) (*tlsPlan, error) {
	certPEM, keyPEM, err := loadgen.SelfSigned()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wsbench-tls-")
	if err != nil {
		return nil, err
	}
	t := &tlsPlan{dir: dir, cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), pem: string(certPEM), x25519: x25519}
	if err := os.WriteFile(t.cert, certPEM, 0o600); err != nil {
		t.cleanup()
		return nil, err
	}
	if err := os.WriteFile(t.key, keyPEM, 0o600); err != nil {
		t.cleanup()
		return nil, err
	}
	return t, nil
}

func (t *tlsPlan) cleanup() { _ = os.RemoveAll(t.dir) }

// job is what the clients need to know of the plan.
func (t *tlsPlan) job() *loadgen.TLSJob {
	return &loadgen.TLSJob{RootPEM: t.pem, X25519: t.x25519}
}

// transports are the runs of each case: ws only, or with -tls ws and then
// wss (true), one after the other on the same load.
func (p *plan) transports() []bool {
	if p.tls != nil {
		return []bool{false, true}
	}
	return []bool{false}
}

// tlsSpec is spec started for a run over wss when wss is set: its command
// line gets the run's certificate.
func tlsSpec(p *plan, spec serverSpec, wss bool) serverSpec {
	if !wss {
		return spec
	}
	args := spec.args
	spec.args = func(bin, mode, addr, debug string) []string {
		return append(args(bin, mode, addr, debug), "-tls-cert", p.tls.cert, "-tls-key", p.tls.key)
	}
	return spec
}

// tlsJob makes job's connections wss when wss is set.
func tlsJob(p *plan, job *loadgen.Job, wss bool) {
	if wss {
		job.TLS = p.tls.job()
	}
}

// dialSender opens the broadcast's sending connection, over wss when wss
// is set (through a local socket pair: see loadgen.DialTLSBridge).
func dialSender(p *plan, wss bool, addr, path string) (*loadgen.Conn, error) {
	if !wss {
		return loadgen.Dial("127.0.0.1", addr, path, 10*time.Second)
	}
	cfg, err := p.tls.job().Config()
	if err != nil {
		return nil, err
	}
	return loadgen.DialTLSBridge("127.0.0.1", addr, path, cfg, 10*time.Second)
}

// label names a run's column in the report: the server, and " wss" for a
// run over wss.
func label(r Run) string { return withTransport(r.Server, r.TLS) }

// withTransport is name, followed by " wss" when wss is set.
func withTransport(name string, wss bool) string {
	if wss {
		return name + " wss"
	}
	return name
}

// labels are the report's columns for servers: each server, followed with
// -tls by its wss run.
func (p *plan) labels(servers []string) []string {
	var out []string
	for _, s := range servers {
		for _, wss := range p.transports() {
			out = append(out, label(Run{Server: s, TLS: wss}))
		}
	}
	return out
}

// barColor is the colour of column i of servers in a chart: each server
// its own from the palette, its wss column the same colour, lighter.
func barColor(servers []string, i int) color.Color {
	k := -1 // the server's place among the columns that are not wss
	for _, s := range servers[:i+1] {
		if !strings.HasSuffix(s, " wss") {
			k++
		}
	}
	c := color.RGBAModel.Convert(palette[max(k, 0)%len(palette)]).(color.RGBA)
	if strings.HasSuffix(servers[i], " wss") {
		lighter := func(v uint8) uint8 { return v + (255-v)/2 }
		c.R, c.G, c.B = lighter(c.R), lighter(c.G), lighter(c.B)
	}
	return c
}
