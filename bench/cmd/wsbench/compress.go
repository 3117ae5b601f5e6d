package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wsdproject/wsd/bench/loadgen"
)

// compressServers are the servers that can run with permessage-deflate:
// wsd, and the peers whose library compresses a broadcast once.
var compressServers = []string{"wsd", "gorilla", "gws"}

// compressDefaults gives -compress its own defaults for the flags the
// command line did not set: wsd, gorilla and gws; echo and broadcast;
// 1,000 and 10,000 connections; 1 KiB messages. It checks that every
// server can compress and that the sizes fit JSONPayload.
func compressDefaults(fs *flag.FlagSet) error {
	if fs.Lookup("compress").Value.String() != "true" {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, value := range map[string]string{
		"servers":   strings.Join(compressServers, ","),
		"scenarios": "echo,broadcast",
		"conns":     "1000,10000",
		"sizes":     "1024",
	} {
		if !set[name] {
			if err := fs.Set(name, value); err != nil {
				return err
			}
		}
	}
	for _, s := range strings.Split(fs.Lookup("servers").Value.String(), ",") {
		if !slices.Contains(compressServers, s) {
			return fmt.Errorf("-compress: %s cannot compress (servers: %s)", s, strings.Join(compressServers, ", "))
		}
	}
	for _, n := range splitInts(fs.Lookup("sizes").Value.String()) {
		if n < loadgen.JSONMinSize {
			return fmt.Errorf("-compress: size %d is below the JSON messages' %d bytes", n, loadgen.JSONMinSize)
		}
	}
	return nil
}

// setCompress turns -compress on for the plan. -quick's 32-byte messages
// become 1 KiB, the JSON messages' usual size (compressDefaults refuses
// other sizes below JSONMinSize).
func (p *plan) setCompress(on bool) {
	p.compress = on
	for i, n := range p.sizes {
		if on && n < loadgen.JSONMinSize {
			p.sizes[i] = 1024
		}
	}
}

// deflateModes are the runs of each case: plain only, or with -compress
// plain and then permessage-deflate, one after the other on the same load.
func (p *plan) deflateModes() []bool {
	if p.compress {
		return []bool{false, true}
	}
	return []bool{false}
}

// compressSpec is spec started for a run with or without permessage-deflate.
// Under -compress wsd gets -compression on or off explicitly (it is on by
// default), a peer -compress when the run compresses; otherwise spec is
// unchanged.
func compressSpec(p *plan, spec serverSpec, deflate bool) serverSpec {
	if !p.compress {
		return spec
	}
	args := spec.args
	spec.args = func(bin, mode, addr, debug string) []string {
		a := args(bin, mode, addr, debug)
		switch {
		case spec.name == "wsd" && deflate:
			return append(a, "-compression=on")
		case spec.name == "wsd":
			return append(a, "-compression=off")
		case deflate:
			return append(a, "-compress")
		}
		return a
	}
	return spec
}

// compressJob sets what a worker needs for a run with or without
// permessage-deflate: under -compress every message is JSONPayload's, and
// the deflate runs offer the extension and send echoes compressed.
func compressJob(p *plan, job *loadgen.Job, deflate bool) {
	job.JSON, job.Deflate = p.compress, deflate
}

// broadcastMessage is what a publisher sends: its opcode and how it writes
// message seq of size bytes.
type broadcastMessage struct {
	op      byte
	payload func(dst []byte, seq uint64, size int) []byte
}

// broadcastMessage is a text frame of JSONPayload under -compress, or
// BroadcastPayload's binary message (at least 16 bytes).
func (p *plan) broadcastMessage() broadcastMessage {
	if p.compress {
		return broadcastMessage{0x1, loadgen.JSONPayload}
	}
	return broadcastMessage{0x2, func(dst []byte, seq uint64, size int) []byte {
		return loadgen.BroadcastPayload(dst, seq, max(size, 16))
	}}
}

// wireBytesPerOp is the bytes the clients read per message received.
func wireBytesPerOp(res loadgen.Result) float64 {
	if res.Messages == 0 {
		return 0
	}
	return float64(res.WireBytes) / float64(res.Messages)
}

// deflateLabel names a server's runs in the compression report: "wsd" for
// plain ones, "wsd+deflate" for the others.
func deflateLabel(r Run) string {
	if r.Deflate {
		return r.Server + "+deflate"
	}
	return r.Server
}

// writeCompress writes compress.json, compress.md and the compress-*.png
// charts into dir, and returns the markdown.
func writeCompress(dir string, meta map[string]any, runs []Run) (string, error) {
	b, _ := json.MarshalIndent(map[string]any{"machine": meta, "runs": runs}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "compress.json"), b, 0o644); err != nil {
		return "", err
	}
	return writeCompressReport(dir, meta, runs)
}

// rereportCompress rebuilds compress.md and its charts from compress.json,
// if dir has one.
func rereportCompress(dir string) (found bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "compress.json"))
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	var data struct {
		Machine map[string]any `json:"machine"`
		Runs    []Run          `json:"runs"`
	}
	if err := json.Unmarshal(b, &data); err != nil {
		return true, err
	}
	md, err := writeCompressReport(dir, data.Machine, data.Runs)
	if err == nil {
		fmt.Print(md)
	}
	return true, err
}

// failedRun is an error naming the first run that failed, or nil.
func failedRun(runs []Run) error {
	for _, r := range runs {
		if !r.OK {
			return fmt.Errorf("%s %s n=%d: %s", deflateLabel(r), r.Scenario, r.Conns, r.Err)
		}
	}
	return nil
}
