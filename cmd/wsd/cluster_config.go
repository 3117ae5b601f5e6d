package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/wsdproject/wsd/engine"
	"github.com/wsdproject/wsd/natsbroker"
)

// The NATS settings of a node of a cluster (see cluster.go): flags, their
// checks, and natsbroker.Options.

// addClusterFlags adds the NATS flags to fs, bound to c's fields.
func addClusterFlags(fs *flag.FlagSet, c *config) {
	text := func(p *string, name, def string, list bool, check func(string) *valueError, usage string) {
		*p = def
		fs.Var(&textValue{p: p, list: list, check: check}, name, usage)
	}
	text(&c.NATSURL, "nats-url", "", true, eachItem(checkNATSURL),
		"join an existing NATS deployment: its servers, comma-separated (nats://host:4222, tls://host:4222); every wsd with the same -nats-prefix there shares topics")
	text(&c.NATSCreds, "nats-creds", "", false, checkCredsFile, "with -nats-url: a NATS credentials file (user JWT and nkey seed)")
	text(&c.NATSTLSCA, "nats-tls-ca", "", false, checkCAFile, "with -nats-url: PEM CA certificates that verify the NATS servers (empty: the system's roots)")
	text(&c.NATSListen, "nats-listen", "", false, checkNATSListen,
		"run an embedded NATS node in this process that takes routes from the other wsd nodes on host:port, e.g. 10.0.0.1:6248 (unauthenticated: keep it on a private network); no other service is needed")
	text(&c.NATSRoutes, "nats-routes", "", true, eachItem(checkNATSRoute),
		"with -nats-listen: the other nodes' -nats-listen addresses, nats://host:port, comma-separated (this node's own may be listed too, so every node can share one list)")
	text(&c.NATSPrefix, "nats-prefix", natsbroker.DefaultPrefix, false, checkNATSPrefix,
		"first token(s) of every NATS subject wsd uses: nodes share topics only with the nodes of the same prefix")
	text(&c.NATSNode, "nats-node", "", false, checkNATSNode,
		"this node's id, unique in the cluster (empty: a random one at each start); set it, to the host name say, so that the node keeps its name across restarts in connection ids (node.42), per-node counts and logs")
	text(&c.NATSStoreDir, "nats-store-dir", "", false, nil,
		"with -nats-listen and -history: the embedded NATS node's JetStream directory, where it keeps its copy of the history stream (empty: wsd-nats/<node> under the temporary directory)")
	text(&c.NATSClusterName, "nats-cluster-name", natsbroker.DefaultClusterName, false, checkNATSClusterName,
		"with -nats-listen: the name of the embedded NATS nodes' cluster; a node of another name is refused")
}

// checkNATSURL vets one -nats-url entry.
func checkNATSURL(s string) *valueError {
	u, err := url.Parse(s)
	if err == nil && (u.Scheme == "nats" || u.Scheme == "tls") && u.Hostname() != "" && (u.Port() == "" || portOK(u.Port(), 1)) && (u.Path == "" || u.Path == "/") {
		return nil
	}
	return &valueError{"NATS URL", s, "want nats://host:port or tls://host:port (the port defaults to 4222)"}
}

// checkNATSRoute vets one -nats-routes entry.
func checkNATSRoute(s string) *valueError {
	u, err := url.Parse(s)
	if err == nil && u.Scheme == "nats" && u.Hostname() != "" && portOK(u.Port(), 1) && (u.Path == "" || u.Path == "/") {
		return nil
	}
	return &valueError{"NATS route", s, "want nats://host:port, the -nats-listen address of another node"}
}

// checkNATSListen vets -nats-listen: empty (no embedded NATS node) or
// host:port.
func checkNATSListen(s string) *valueError {
	if s == "" || hostPortOK(s, 0) {
		return nil
	}
	return &valueError{"address", s, "want host:port (port 0-65535, 0 for any free port), or nothing for no embedded NATS node"}
}

// portOK reports whether port is a number from minPort to 65535.
func portOK(port string, minPort int) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= minPort && n <= 65535
}

// checkNATSPrefix vets -nats-prefix as natsbroker does: dot-separated
// tokens of printable ASCII without spaces or wildcards, not starting with
// '$' (NATS's own subjects).
func checkNATSPrefix(s string) *valueError {
	ok := s != "" && !strings.HasPrefix(s, "$")
	for _, tok := range strings.Split(s, ".") {
		ok = ok && tok != "" && !strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '*' || r == '>' })
	}
	if ok {
		return nil
	}
	return &valueError{"NATS prefix", s, "want dot-separated words of printable ASCII without spaces, * or >, not starting with $, like wsd or wsd.prod"}
}

// maxNodeLen is the longest node id natsbroker takes.
const maxNodeLen = 128

// checkNATSNode vets -nats-node: empty (random) or up to maxNodeLen bytes
// of printable ASCII without spaces.
func checkNATSNode(s string) *valueError {
	if len(s) <= maxNodeLen && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil
	}
	return &valueError{"node id", s, fmt.Sprintf("want up to %d printable ASCII characters without spaces, like ws1 (or nothing for a random id)", maxNodeLen)}
}

// checkNATSClusterName vets -nats-cluster-name: printable ASCII without
// spaces.
func checkNATSClusterName(s string) *valueError {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil
	}
	return &valueError{"NATS cluster name", s, "want printable ASCII without spaces, like wsd"}
}

// checkCredsFile vets -nats-creds: empty, or a file wsd can read.
func checkCredsFile(s string) *valueError {
	if s == "" {
		return nil
	}
	if _, err := os.ReadFile(s); err != nil {
		return &valueError{"file", s, "want a readable NATS credentials file (" + fileProblem(err) + ")"}
	}
	return nil
}

// checkCAFile vets -nats-tls-ca: empty, or a readable file of PEM
// certificates.
func checkCAFile(s string) *valueError {
	if s == "" {
		return nil
	}
	const want = "want a readable file of PEM CA certificates"
	data, err := os.ReadFile(s)
	if err != nil {
		return &valueError{"file", s, want + " (" + fileProblem(err) + ")"}
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return &valueError{"file", s, want + " (it holds none)"}
	}
	return nil
}

// fileProblem is why a file could not be read, without its path (the
// error names the path already).
func fileProblem(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// clustered reports whether c makes wsd a node of a cluster.
func (c *config) clustered() bool {
	return len(splitList(c.NATSURL)) > 0 || c.NATSListen != ""
}

// checkCluster checks the NATS flags against each other and the mode: one
// way to reach NATS, and no flag that would have no effect.
func (c *config) checkCluster() []error {
	var errs []error
	urls, listen := len(splitList(c.NATSURL)) > 0, c.NATSListen != ""
	// set reports a flag set to something: given at all, for the flags
	// with a default; given a value, for the others.
	set := func(name, v string) bool {
		_, given := c.from[name]
		if name == "nats-prefix" || name == "nats-cluster-name" {
			return given
		}
		return v != ""
	}
	if urls {
		for _, f := range []struct{ name, v string }{{"nats-listen", c.NATSListen}, {"nats-routes", c.NATSRoutes}, {"nats-cluster-name", c.NATSClusterName}} {
			if set(f.name, f.v) {
				errs = append(errs, fmt.Errorf("%s cannot go with %s: -nats-url joins an existing NATS deployment, while -nats-listen, -nats-routes and -nats-cluster-name run an embedded NATS node; give one or the other",
					c.describe(f.name, f.v), c.describe("nats-url", c.NATSURL)))
			}
		}
	} else {
		for _, f := range []struct{ name, v string }{{"nats-creds", c.NATSCreds}, {"nats-tls-ca", c.NATSTLSCA}} {
			if set(f.name, f.v) {
				errs = append(errs, fmt.Errorf("%s needs -nats-url: it is for connecting to a NATS deployment (an embedded NATS node is reached in-process)", c.describe(f.name, f.v)))
			}
		}
	}
	switch {
	case urls || listen:
		if c.Mode == "echo" {
			name, v := "nats-url", c.NATSURL
			if !urls {
				name, v = "nats-listen", c.NATSListen
			}
			errs = append(errs, fmt.Errorf("%s needs -mode chat or push: %s has no topics to share", c.describe(name, v), c.describe("mode", c.Mode)))
		}
	default:
		if set("nats-routes", c.NATSRoutes) {
			errs = append(errs, fmt.Errorf("%s needs -nats-listen: the other nodes route back to this node's -nats-listen address", c.describe("nats-routes", c.NATSRoutes)))
		}
		for _, f := range []struct{ name, v string }{{"nats-node", c.NATSNode}, {"nats-prefix", c.NATSPrefix}, {"nats-cluster-name", c.NATSClusterName}} {
			if set(f.name, f.v) {
				errs = append(errs, fmt.Errorf("%s needs -nats-url or -nats-listen: without either, wsd runs alone with its in-process hub", c.describe(f.name, f.v)))
			}
		}
	}
	return errs
}

// natsOptions maps the NATS flags onto natsbroker.Options.
func natsOptions(cfg *config, log *zap.Logger) natsbroker.Options {
	o := natsbroker.Options{Node: cfg.NATSNode, Prefix: cfg.NATSPrefix, Logger: log.Named("nats")}
	if urls := splitList(cfg.NATSURL); len(urls) > 0 {
		o.URLs, o.CredsFile, o.TLSCAFile = urls, cfg.NATSCreds, cfg.NATSTLSCA
		natsHistory(cfg, &o) // history on JetStream (history_cluster.go)
		return o
	}
	o.Listen, o.Routes, o.ClusterName = cfg.NATSListen, splitList(cfg.NATSRoutes), cfg.NATSClusterName
	if o.Listen != "" {
		natsHistory(cfg, &o) // history on the embedded servers' JetStream, replicated (natsbroker/embedded_js_cluster.go)
		o.HistoryDir = cfg.NATSStoreDir
	}
	o.MaxPayload = natsMaxPayload(cfg.MaxMessageSize)
	o.MaxPending = natsMaxPending()
	return o
}

// natsMaxPending is what the embedded NATS node keeps for one client, this
// node's connection among them, before it drops it as a slow consumer: the
// same as the default -max-buffered-total (a quarter of physical memory,
// at most 1 GiB), and at least natsbroker's default of 256 MiB. A burst
// that outruns this node by more than that is lost in part (README, Run a
// cluster).
func natsMaxPending() int64 {
	return max(natsbroker.DefaultMaxPending, engine.DefaultMaxBufferedTotal())
}

// natsMaxPayload is the largest NATS message of the embedded node: the
// largest message wsd takes (-max-message-size; 0 is no limit) with room
// for the topics it goes to, at least NATS's default of 1 MiB (0) and at
// most the 64 MiB NATS allows. A deployment joined with -nats-url has its
// own max_payload.
func natsMaxPayload(maxMessage int64) int {
	const room, most = 64 << 10, 64 << 20
	switch {
	case maxMessage == 0 || maxMessage > most-room:
		return most
	case maxMessage+room <= 1<<20:
		return 0
	}
	return int(maxMessage + room)
}
