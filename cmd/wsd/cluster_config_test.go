package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/natsbroker"
)

// clusterSetting is one NATS setting as each source gives it.
type clusterSetting struct{ flag, text string }

// fromSources returns the command line, the environment and the config
// file content that give settings, each from src: "flag", "env" or
// "file".
func fromSources(src string, settings []clusterSetting) (args, env []string, file string) {
	for _, s := range settings {
		switch src {
		case "flag":
			args = append(args, "-"+s.flag, s.text)
		case "env":
			env = append(env, envName(s.flag)+"="+s.text)
		case "file":
			file += fmt.Sprintf("%s: %q\n", strings.ReplaceAll(s.flag, "-", "_"), s.text)
		}
	}
	return args, env, file
}

// loadFrom runs loadConfig on settings given by src, in a temporary
// directory, the file (if any) being c.yaml.
func loadFrom(t *testing.T, src string, settings []clusterSetting) (*config, error) {
	t.Helper()
	args, env, file := fromSources(src, settings)
	t.Chdir(t.TempDir())
	if file != "" {
		if err := os.WriteFile("c.yaml", []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-config", "c.yaml"}, args...)
	}
	c, warnings, err := loadConfig(args, env)
	if len(warnings) > 0 {
		t.Errorf("warnings %q", warnings)
	}
	return c, err
}

// writeCA writes a self-signed CA certificate as PEM and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeConfig(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// TestClusterConfig maps the NATS settings, from each source, onto
// natsbroker.Options.
func TestClusterConfig(t *testing.T) {
	ca, creds := writeCA(t), writeConfig(t, "nats.creds", "-----BEGIN NATS USER JWT-----\n")
	cases := []struct {
		name     string
		settings []clusterSetting
		want     natsbroker.Options // Logger left out
	}{
		{"join", []clusterSetting{{"mode", "push"}, {"nats-url", "nats://n1:4222,tls://n2:4222, nats://n3"}, {"nats-creds", creds}, {"nats-tls-ca", ca}},
			natsbroker.Options{URLs: []string{"nats://n1:4222", "tls://n2:4222", "nats://n3"}, CredsFile: creds, TLSCAFile: ca, Prefix: "wsd"}},
		{"join with a node and a prefix", []clusterSetting{{"nats-url", "nats://127.0.0.1:4222"}, {"nats-node", "ws-1.eu"}, {"nats-prefix", "wsd.prod"}},
			natsbroker.Options{URLs: []string{"nats://127.0.0.1:4222"}, Node: "ws-1.eu", Prefix: "wsd.prod"}},
		{"embedded", []clusterSetting{{"nats-listen", "10.0.0.1:6248"}, {"nats-routes", "nats://10.0.0.1:6248,nats://10.0.0.2:6248"}, {"nats-node", "ws1"}},
			natsbroker.Options{Listen: "10.0.0.1:6248", Routes: []string{"nats://10.0.0.1:6248", "nats://10.0.0.2:6248"}, Node: "ws1", Prefix: "wsd", ClusterName: "wsd", MaxPayload: 16<<20 + 64<<10, MaxPending: natsMaxPending()}},
		{"embedded, a cluster name, a small max message size", []clusterSetting{{"nats-listen", ":6248"}, {"nats-cluster-name", "eu"}, {"max-message-size", "64KiB"}},
			natsbroker.Options{Listen: ":6248", Prefix: "wsd", ClusterName: "eu", MaxPayload: 0, MaxPending: natsMaxPending()}},
		{"embedded, no message size limit", []clusterSetting{{"nats-listen", "127.0.0.1:0"}, {"max-message-size", "0"}},
			natsbroker.Options{Listen: "127.0.0.1:0", Prefix: "wsd", ClusterName: "wsd", MaxPayload: 64 << 20, MaxPending: natsMaxPending()}},
		{"embedded, a message size near the NATS limit", []clusterSetting{{"nats-listen", "127.0.0.1:6248"}, {"max-message-size", "64MiB"}},
			natsbroker.Options{Listen: "127.0.0.1:6248", Prefix: "wsd", ClusterName: "wsd", MaxPayload: 64 << 20, MaxPending: natsMaxPending()}},
	}
	for _, tc := range cases {
		for _, src := range []string{"flag", "env", "file"} {
			t.Run(tc.name+"/"+src, func(t *testing.T) {
				c, err := loadFrom(t, src, tc.settings)
				if err != nil {
					t.Fatal(err)
				}
				if !c.clustered() {
					t.Fatal("not clustered")
				}
				got := natsOptions(c, zap.NewNop())
				got.Logger = nil
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("options\n got %+v\nwant %+v", got, tc.want)
				}
			})
		}
	}
	c, _, err := loadConfig(nil, nil)
	if err != nil || c.clustered() {
		t.Errorf("no NATS setting: clustered %v, error %v; want a node alone", c.clustered(), err)
	}
}

// TestClusterConfigErrors checks the NATS settings that are refused: each
// error names the flag, variable or key and says what would do.
func TestClusterConfigErrors(t *testing.T) {
	noPEM, creds := writeConfig(t, "notes.txt", "not a certificate\n"), writeConfig(t, "nats.creds", "")
	cases := []struct {
		name     string
		settings []clusterSetting
		kind     string // a refused value: its kind, for the message of each source
		want     string // its "want ...", or the whole error of a relation
	}{
		{"URL scheme", []clusterSetting{{"nats-url", "http://n1:4222"}}, "NATS URL", "want nats://host:port or tls://host:port (the port defaults to 4222)"},
		{"URL without a host", []clusterSetting{{"nats-url", "nats://:4222"}}, "NATS URL", "want nats://host:port or tls://host:port"},
		{"URL port", []clusterSetting{{"nats-url", "nats://n1:0"}}, "NATS URL", "want nats://host:port"},
		{"URL path", []clusterSetting{{"nats-url", "nats://n1:4222/x"}}, "NATS URL", "want nats://host:port"},
		{"route without a scheme", []clusterSetting{{"nats-routes", "10.0.0.2:6248"}}, "NATS route", "want nats://host:port, the -nats-listen address of another node"},
		{"route without a port", []clusterSetting{{"nats-routes", "nats://10.0.0.2"}}, "NATS route", "want nats://host:port"},
		{"listen", []clusterSetting{{"nats-listen", "6248"}}, "address", "want host:port (port 0-65535, 0 for any free port), or nothing for no embedded NATS node"},
		{"prefix with a wildcard", []clusterSetting{{"nats-prefix", "wsd.*"}}, "NATS prefix", "want dot-separated words of printable ASCII without spaces, * or >, not starting with $, like wsd or wsd.prod"},
		{"prefix of NATS", []clusterSetting{{"nats-prefix", "$SYS"}}, "NATS prefix", "want dot-separated words"},
		{"prefix with an empty word", []clusterSetting{{"nats-prefix", "wsd..x"}}, "NATS prefix", "want dot-separated words"},
		{"empty prefix", []clusterSetting{{"nats-prefix", ""}}, "NATS prefix", "want dot-separated words"},
		{"node with a space", []clusterSetting{{"nats-node", "ws 1"}}, "node id", "want up to 128 printable ASCII characters without spaces, like ws1 (or nothing for a random id)"},
		{"node too long", []clusterSetting{{"nats-node", strings.Repeat("n", 129)}}, "node id", "want up to 128 printable ASCII"},
		{"cluster name", []clusterSetting{{"nats-cluster-name", "my cluster"}}, "NATS cluster name", "want printable ASCII without spaces, like wsd"},
		{"missing creds", []clusterSetting{{"nats-creds", "/nonexistent/nats.creds"}}, "file", "want a readable NATS credentials file (no such file or directory)"},
		{"CA without a certificate", []clusterSetting{{"nats-tls-ca", noPEM}}, "file", "want a readable file of PEM CA certificates (it holds none)"},

		{"URL and listen", []clusterSetting{{"nats-url", "nats://n1:4222"}, {"nats-listen", "127.0.0.1:6248"}}, "",
			"-nats-listen 127.0.0.1:6248 cannot go with -nats-url nats://n1:4222: -nats-url joins an existing NATS deployment, while -nats-listen, -nats-routes and -nats-cluster-name run an embedded NATS node; give one or the other"},
		{"URL and routes", []clusterSetting{{"nats-url", "nats://n1:4222"}, {"nats-routes", "nats://n2:6248"}}, "", "-nats-routes nats://n2:6248 cannot go with -nats-url nats://n1:4222: "},
		{"URL and a cluster name", []clusterSetting{{"nats-url", "nats://n1:4222"}, {"nats-cluster-name", "eu"}}, "", "-nats-cluster-name eu cannot go with -nats-url nats://n1:4222: "},
		{"routes without listen", []clusterSetting{{"nats-routes", "nats://n2:6248"}}, "",
			"-nats-routes nats://n2:6248 needs -nats-listen: the other nodes route back to this node's -nats-listen address"},
		{"creds without a URL", []clusterSetting{{"nats-listen", "127.0.0.1:6248"}, {"nats-creds", creds}}, "",
			"-nats-creds " + creds + " needs -nats-url: it is for connecting to a NATS deployment (an embedded NATS node is reached in-process)"},
		{"node alone", []clusterSetting{{"nats-node", "ws1"}}, "",
			"-nats-node ws1 needs -nats-url or -nats-listen: without either, wsd runs alone with its in-process hub"},
		{"prefix alone, even the default", []clusterSetting{{"nats-prefix", "wsd"}}, "", "-nats-prefix wsd needs -nats-url or -nats-listen"},
		{"echo", []clusterSetting{{"mode", "echo"}, {"nats-listen", "127.0.0.1:6248"}}, "",
			"-nats-listen 127.0.0.1:6248 needs -mode chat or push: -mode echo has no topics to share"},
	}
	for _, tc := range cases {
		for _, src := range []string{"flag", "env", "file"} {
			t.Run(tc.name+"/"+src, func(t *testing.T) {
				_, err := loadFrom(t, src, tc.settings)
				if err == nil {
					t.Fatalf("no error; want %s", tc.want)
				}
				want := tc.want
				if tc.kind != "" {
					s := tc.settings[len(tc.settings)-1]
					switch src {
					case "flag":
						want = fmt.Sprintf("-%s: invalid %s %q: %s", s.flag, tc.kind, s.text, tc.want)
					case "env":
						want = fmt.Sprintf("-%s: invalid %s %q (from %s): %s", s.flag, tc.kind, s.text, envName(s.flag), tc.want)
					case "file":
						want = fmt.Sprintf("c.yaml:1: %s: invalid %s %q: %s", strings.ReplaceAll(s.flag, "-", "_"), tc.kind, s.text, tc.want)
					}
				} else if src != "flag" {
					// A relation names where each value came from.
					want = withSources(src, tc.settings, want)
				}
				if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error:\n%v\nwant one error starting with:\n%s", err, want)
				}
			})
		}
	}
}

// withSources writes into want, after each "-flag value" of settings,
// where the value came from when src is not the command line.
func withSources(src string, settings []clusterSetting, want string) string {
	for i, s := range settings {
		from := envName(s.flag)
		if src == "file" {
			from = fmt.Sprintf("c.yaml:%d: %s", i+1, strings.ReplaceAll(s.flag, "-", "_"))
		}
		want = strings.Replace(want, "-"+s.flag+" "+s.text, "-"+s.flag+" "+s.text+" (from "+from+")", 1)
	}
	return want
}

// TestClusterExampleFiles loads the nodes of configs/cluster: valid, each
// with its own node id and ports, all with the same routes, which name
// every node's route address.
func TestClusterExampleFiles(t *testing.T) {
	seen := map[string]string{}
	var routes []string
	for _, name := range []string{"ws1", "ws2", "ws3"} {
		c, warnings, err := loadConfig([]string{"-config", "../../configs/cluster/" + name + ".yaml"}, nil)
		if err != nil || len(warnings) > 0 {
			t.Fatalf("%s: %v %q", name, err, warnings)
		}
		o := natsOptions(c, zap.NewNop())
		if o.Node != name || o.Listen == "" || c.Mode != "push" {
			t.Errorf("%s: node %q, listen %q, mode %s", name, o.Node, o.Listen, c.Mode)
		}
		for _, addr := range []string{c.Addr, c.AdminAddr, o.Listen} {
			if other, dup := seen[addr]; dup {
				t.Errorf("%s and %s both use %s", name, other, addr)
			}
			seen[addr] = name
		}
		if routes == nil {
			routes = o.Routes
		}
		if !reflect.DeepEqual(o.Routes, routes) {
			t.Errorf("%s: routes %q, want those of ws1, %q", name, o.Routes, routes)
		}
		if !slices.Contains(o.Routes, "nats://"+o.Listen) {
			t.Errorf("%s: routes %q do not name its own nats_listen %s", name, o.Routes, o.Listen)
		}
	}
	if len(routes) != 3 {
		t.Errorf("routes %q, want the three nodes", routes)
	}
}
