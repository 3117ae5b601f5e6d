// Command wsbench runs wsd's side-by-side benchmark against
// goroutine-per-connection WebSocket servers. See bench/README.md.
//
//	wsbench run [-quick] [-servers wsd,gorilla,gobwas,gws,nbio] [-out results]
//	wsbench run -scenarios soak [-soak-quick | -soak-duration 10m -conns 15000]
//	wsbench run -scenarios cluster [-cluster-quick | -conns 100000 -cluster-nodes 7]
//
// "wsbench worker" is the load-generator process it starts itself.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/wsdproject/wsd/bench/loadgen"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := loadgen.RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "report" {
		if err := rereport(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "wsbench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: wsbench run [flags] | wsbench report [-dir results]")
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "wsbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if handled, err := historyRun(args); handled { // -scenarios history runs alone (history.go)
		return err
	}
	fs := flag.NewFlagSet("wsbench run", flag.ContinueOnError)
	var (
		servers   = fs.String("servers", "wsd,gorilla,gobwas,gws,nbio", "servers to compare, run interleaved")
		scenarios = fs.String("scenarios", "connect,idle,echo,broadcast", "scenarios: connect, idle, echo, broadcast, and soak and cluster (wsd alone, run once; not in the default list)")
		conns     = fs.String("conns", "1000,5000,15000", "connection counts (soak: the largest; 15000 when not set)")
		sizes     = fs.String("sizes", "32,1024", "payload sizes for echo and broadcast")
		rounds    = fs.Int("rounds", 3, "rounds (medians are reported)")
		quick     = fs.Bool("quick", false, "smoke test: 200 connections, 32 B, 1 round, short phases")
		out       = fs.String("out", "results", "directory for results.json and results.md")
		serverCPU = fs.String("server-cpu", "0", "CPU list the server is pinned to (taskset -c); empty: no pinning")
		clientCPU = fs.String("client-cpu", "1", "CPU list the load generators are pinned to; empty: no pinning")
		echoFor   = fs.Duration("echo-duration", 5*time.Second, "echo phase length")
		eDepths   = fs.String("echo-depths", "1,16", "echo: messages each connection keeps in flight, one run each: 1 is ping-pong, more are written back to back in one write (a client that pipelines)")
		idleFor   = fs.Duration("idle-settle", 3*time.Second, "idle: time between the last connection and the memory reading")
		idleTopic = fs.String("idle-topic", "", "idle: wsd alone, in push mode, every connection subscribed to this topic (?topics=); needs -servers wsd")
		bRates    = fs.String("broadcast-rates", "20000,200000", "broadcast: delivered frames per second aimed at, one run each (publish rate = this / connections): one that every server sustains, one that saturates a core")
		bFor      = fs.Duration("broadcast-duration", 5*time.Second, "broadcast: publishing time")
		profile   = fs.String("profile", "", "save CPU profiles of wsd's echo and broadcast phases in this directory")
		wsdRev    = fs.String("wsd-rev", "", "build wsd from this git revision (e.g. HEAD) instead of the working tree")
		soakFor   = fs.Duration("soak-duration", 10*time.Minute, "soak: length of the run")
		soakQuick = fs.Bool("soak-quick", false, "soak for CI: 2000 connections for 30 s (-quick does not change the soak)")
		soakAbuse = fs.Float64("soak-abusers", 0.01, "soak: share of the connections that are abusive clients")
		soakRate  = fs.Float64("soak-rate", 10000, "soak: frames per second the well-behaved clients get together, half from their rooms, half from news")
		soakRoom  = fs.Int("soak-room", 25, "soak: well-behaved clients per room")
		soakFlat  = fs.Float64("soak-flat", 0.05, "soak: RSS, Go heap and goroutines after the warm-up must stay within this share of their median (goroutines: or 5)")
		soakWarm  = fs.Float64("soak-warmup", 0.2, "soak: share of the run before goroutines are judged; memory also waits for one whole abuse cycle")
		compress  = fs.Bool("compress", false, "JSON messages, and every echo and broadcast case run twice, plain and with permessage-deflate; defaults -servers wsd,gorilla,gws -scenarios echo,broadcast -conns 1000,10000 -sizes 1024; writes compress.json, compress.md and compress-*.png")
		tlsOn     = fs.Bool("tls", false, "run every case over ws and then over wss (a self-signed ECDSA P-256 certificate made at the start; a full TLS handshake per connection): columns \"wsd\" and \"wsd wss\" side by side")
		tlsX25519 = fs.Bool("tls-x25519", false, "with -tls: the clients offer X25519 alone instead of crypto/tls's X25519MLKEM768 first, so that every server does the key exchange of nbio's TLS, which has no ML-KEM")
	)
	clusterOpts := clusterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := compressDefaults(fs); err != nil {
		return err
	}
	connsSet := false
	fs.Visit(func(f *flag.Flag) { connsSet = connsSet || f.Name == "conns" })
	var sp *soakPlan
	var cp *clusterPlan
	var others []string
	for _, s := range strings.Split(*scenarios, ",") {
		if s == "cluster" { // -conns: the total, when given
			c := clusterOpts(btoi(connsSet) * slices.Max(append(splitInts(*conns), 1)))
			cp = &c
			continue
		}
		if s == "soak" {
			sp = &soakPlan{conns: 15000, duration: *soakFor, abusers: *soakAbuse, rate: *soakRate, room: *soakRoom, tolerance: *soakFlat, warmup: *soakWarm}
			if connsSet {
				sp.conns = slices.Max(append(splitInts(*conns), 1))
			}
			if *soakQuick {
				sp.conns, sp.duration = 2000, 30*time.Second
			}
			continue
		}
		others = append(others, s)
	}
	p := &plan{
		scenarios: others, conns: splitInts(*conns), sizes: splitInts(*sizes), rounds: *rounds,
		echoFor: *echoFor, echoDepths: splitInts(*eDepths), idleFor: *idleFor, bcastRates: splitInts(*bRates), bcastFor: *bFor,
		serverCPU: *serverCPU, clientCPU: *clientCPU, perWorker: 7500, sourceBase: 2, dialParallel: 32, profileDir: *profile,
	}
	if *quick {
		p.conns, p.sizes, p.rounds = []int{200}, []int{32}, 1
		p.echoFor, p.idleFor, p.bcastFor, p.bcastRates = time.Second, 500*time.Millisecond, time.Second, []int{20000}
	}
	p.setCompress(*compress)
	if *tlsOn {
		if *compress {
			return fmt.Errorf("-tls and -compress do not run together: the wss clients do not compress")
		}
		t, err := newTLSPlan(*tlsX25519)
		if err != nil {
			return err
		}
		defer t.cleanup()
		p.tls = t
	}
	if runtime.NumCPU() < 2 {
		p.serverCPU, p.clientCPU = "", ""
	}
	names := strings.Split(*servers, ",")
	if err := checkIdleTopic(*idleTopic, names); err != nil {
		return err
	}
	p.idleTopic = *idleTopic
	if len(others) == 0 {
		names = nil // the soak alone: wsd only
	}
	toBuild := names
	if (sp != nil || cp != nil) && !slices.Contains(names, "wsd") {
		toBuild = append(toBuild, "wsd")
	}
	binDir, err := os.MkdirTemp("", "wsbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	bins := map[string]string{}
	for _, name := range toBuild {
		if _, ok := specs[name]; !ok {
			return fmt.Errorf("unknown server %q", name)
		}
		bin, err := build(name, binDir, *wsdRev)
		if err != nil {
			return err
		}
		bins[name] = bin
	}

	started := time.Now()
	var runs []Run
	for round := 1; round <= p.rounds; round++ {
		for _, scenario := range p.scenarios {
			for _, n := range p.conns {
				for _, size := range sizesFor(scenario, p.sizes) {
					for _, load := range loadsFor(scenario, p) {
						for _, name := range names { // interleaved: A B C ... per case
							for _, deflate := range p.deflateModes() {
								for _, wss := range p.transports() {
									r := runOne(p, specs[name], bins[name], scenario, n, size, load, round, deflate, wss)
									fmt.Fprintln(os.Stderr, summary(r))
									runs = append(runs, r)
								}
							}
						}
					}
				}
			}
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var soakErr error
	if sp != nil {
		soakErr = soak(p, *sp, bins["wsd"], *out, describeWsd(*wsdRev))
	}
	if cp != nil {
		soakErr = errors.Join(soakErr, clusterScenario(p, *cp, bins["wsd"], *out, describeWsd(*wsdRev)))
	}
	if len(others) == 0 {
		return soakErr
	}
	meta := machineFacts(p, time.Since(started), os.Args)
	if p.compress {
		md, err := writeCompress(*out, meta, runs)
		if err != nil {
			return err
		}
		fmt.Print(md)
		return errors.Join(failedRun(runs), soakErr)
	}
	b, _ := json.MarshalIndent(map[string]any{"machine": meta, "runs": runs}, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "results.json"), b, 0o644); err != nil {
		return err
	}
	md, err := writeReport(*out, meta, runs, p.labels(names))
	if err != nil {
		return err
	}
	fmt.Print(md)
	if err := failedRun(runs); err != nil {
		return err
	}
	return soakErr
}

// soak runs the soak scenario and writes soak.json, soak.md and its charts
// into out. It fails if any check failed.
func soak(p *plan, sp soakPlan, bin, out, wsd string) error {
	started := time.Now()
	fmt.Fprintf(os.Stderr, "soak: %d connections for %v, wsd %s\n", sp.conns, sp.duration, wsd)
	r := runSoak(p, sp, bin)
	return saveOnce(p, started, out, "soak", wsd, r, r.Failures, func(meta map[string]any) (string, error) { return writeSoakReport(out, meta, r) })
}

// saveOnce saves a scenario that runs once (soak, cluster), started at
// started: name.json in out holds the machine's facts and run, write
// writes the report (which is printed), and the run fails with its
// failures.
func saveOnce(p *plan, started time.Time, out, name, wsd string, run any, failures []string, write func(meta map[string]any) (string, error)) error {
	meta := machineFacts(p, time.Since(started), os.Args)
	meta["rounds"] = 1
	meta["wsd"] = wsd
	b, _ := json.MarshalIndent(map[string]any{"machine": meta, name: run}, "", " ")
	if err := os.WriteFile(filepath.Join(out, name+".json"), b, 0o644); err != nil {
		return err
	}
	md, err := write(meta)
	if err != nil {
		return err
	}
	fmt.Print(md)
	if len(failures) > 0 {
		return fmt.Errorf("%s failed: %s", name, strings.Join(failures, "; "))
	}
	return nil
}

// writeSoakReport writes soak.md and the soak's charts into dir.
func writeSoakReport(dir string, meta map[string]any, r SoakRun) (string, error) {
	files, err := soakCharts(r, dir)
	if err != nil {
		return "", fmt.Errorf("charts: %w", err)
	}
	md := soakReport(meta, r, files)
	return md, os.WriteFile(filepath.Join(dir, "soak.md"), []byte(md), 0o644)
}

// sizesFor: payload size matters only for echo and broadcast.
func sizesFor(scenario string, sizes []int) []int {
	if scenario == "echo" || scenario == "broadcast" {
		return sizes
	}
	return []int{0}
}

// loadsFor: the rates aimed at for broadcast, the depths for echo.
func loadsFor(scenario string, p *plan) []int {
	switch scenario {
	case "broadcast":
		return p.bcastRates
	case "echo":
		return p.echoDepths
	}
	return []int{0}
}

// build compiles a server into dir. wsd comes from the parent module.
// A wsdRev that is not empty names the git revision wsd is built from
// (exported into dir first) instead of the working tree.
func build(name, dir, wsdRev string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./servers/"+name)
	cmd.Dir = moduleDir()
	if name == "wsd" { // built by its own module, as users build it
		cmd = exec.Command("go", "build", "-o", out, "./cmd/wsd")
		cmd.Dir = filepath.Dir(moduleDir())
		if wsdRev != "" {
			src, err := exportRev(cmd.Dir, wsdRev, dir)
			if err != nil {
				return "", err
			}
			cmd.Dir = src
		}
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", name, err, b)
	}
	return out, nil
}

// exportRev writes the files of git revision rev of the repository at repo
// into a new directory under dir, and returns it.
func exportRev(repo, rev, dir string) (string, error) {
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return "", err
	}
	archive := exec.Command("git", "archive", "--format=tar", rev)
	archive.Dir = repo
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("extracting %s: %v", rev, err)
	}
	return src, nil
}

// describeWsd names the wsd that is measured: the commit, and whether the
// working tree had changes (when it is built from the working tree).
func describeWsd(wsdRev string) string {
	repo := filepath.Dir(moduleDir())
	rev := wsdRev
	if rev == "" {
		rev = "HEAD"
	}
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", rev).Output()
	if err != nil {
		return "unknown"
	}
	desc := strings.TrimSpace(string(out))
	if wsdRev == "" {
		if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench").Output(); err == nil && len(st) > 0 {
			desc += " with uncommitted changes"
		}
	}
	return desc
}

// moduleDir finds the bench module: the working directory or a parent.
func moduleDir() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/wsdproject/wsd/bench") {
			return d
		}
		if _, err := os.Stat(filepath.Join(d, "bench", "go.mod")); err == nil {
			return filepath.Join(d, "bench")
		}
	}
	return dir
}

func summary(r Run) string {
	status := "ok"
	if !r.OK {
		status = "FAILED: " + r.Err
	}
	return fmt.Sprintf("%-8s %-9s n=%-5d size=%-4d target=%-6d depth=%-2d round=%d  cpu/op=%.2fus rate=%.0f/s p99=%.0fus rss/conn=%.0fB heap/conn=%.0fB  %s",
		withTransport(deflateLabel(r), r.TLS), r.Scenario, r.Conns, r.Size, r.Target, r.Depth, r.Round, r.CPUPerOpUs, r.RatePerS, r.P99us, r.RSSPerConn, r.HeapPerConn, status)
}

// writeReport writes results.md and the charts into dir.
func writeReport(dir string, meta map[string]any, runs []Run, servers []string) (string, error) {
	files, err := charts(runs, servers, dir)
	if err != nil {
		return "", fmt.Errorf("charts: %w", err)
	}
	md := report(meta, runs, servers)
	for _, f := range files {
		md += fmt.Sprintf("![%s](%s)\n\n", strings.TrimSuffix(f, ".png"), f)
	}
	return md, os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644)
}

// rereport rebuilds results.md and the charts from results.json, soak.md
// and its charts from soak.json, and cluster.md and its charts from
// cluster.json, whichever are there.
func rereport(args []string) error {
	fs := flag.NewFlagSet("wsbench report", flag.ContinueOnError)
	dir := fs.String("dir", "results", "directory holding results.json, soak.json, cluster.json or compress.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	found, err := rereportCompress(*dir)
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(*dir, "soak.json")); err == nil {
		found = true
		var data struct {
			Machine map[string]any `json:"machine"`
			Soak    SoakRun        `json:"soak"`
		}
		if err := json.Unmarshal(b, &data); err != nil {
			return err
		}
		md, err := writeSoakReport(*dir, data.Machine, data.Soak)
		if err != nil {
			return err
		}
		fmt.Print(md)
	}
	clusterFound, err := rereportCluster(*dir)
	if err != nil {
		return err
	}
	found = found || clusterFound
	b, err := os.ReadFile(filepath.Join(*dir, "results.json"))
	if os.IsNotExist(err) && found {
		return nil
	}
	if err != nil {
		return err
	}
	var data struct {
		Machine map[string]any `json:"machine"`
		Runs    []Run          `json:"runs"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return err
	}
	var servers []string
	seen := map[string]bool{}
	for _, r := range data.Runs {
		if !seen[label(r)] {
			seen[label(r)] = true
			servers = append(servers, label(r))
		}
	}
	md, err := writeReport(*dir, data.Machine, data.Runs, servers)
	if err == nil {
		fmt.Print(md)
	}
	return err
}
