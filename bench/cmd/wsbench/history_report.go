package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeHistoryReport writes history.md into dir.
func writeHistoryReport(dir string, meta map[string]any, r HistoryRun) (string, error) {
	md := historyReport(meta, r)
	return md, os.WriteFile(filepath.Join(dir, "history.md"), []byte(md), 0o644)
}

// historyReport renders a history run as markdown.
func historyReport(meta map[string]any, r HistoryRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %v (%v CPUs, Linux %v, %v); wsd pinned to CPU %q, the clients are goroutines of wsbench (gorilla/websocket), not pinned; `%v` (took %v).\n\n",
		meta["date"], meta["cpu"], meta["cpus"], meta["kernel"], meta["go"], meta["server_cpu"], meta["command"], meta["took"])
	fmt.Fprintf(&b, "### history: %s\n\n", verdict(r.OK))
	fmt.Fprintf(&b, "wsd %v in push mode, `%s` (history on; the same without `-history` for history off), a fresh process for each publish-cost run.\n\n", meta["wsd"], strings.Join(r.ServerCmd, " "))
	if len(r.Failures) > 0 {
		b.WriteString("Failed checks:\n\n")
		for _, f := range r.Failures {
			b.WriteString("- " + f + "\n")
		}
		b.WriteString("\n")
	}
	if len(r.Cost) > 0 {
		fmt.Fprintf(&b, "**Publish cost**: %s `?format=json` subscribers of `h.cost`, one publisher through `POST /api/publish` at %.0f a second (each call waits for the answer) for %v; server CPU from /proc/PID/stat over the time from the first publish to the last frame.\n\n", thousands(r.Cost[0].Subscribers), r.Cost[0].Rate, time.Duration(r.Cost[0].Duration*float64(time.Second)))
		b.WriteString("| history | publishes | frames delivered | frames/s | server CPU | CPU per publish | CPU per frame |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range r.Cost {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %.2f s | %.1f µs | %.2f µs |\n", map[bool]string{false: "off", true: "on"}[c.History], c.Published, thousands(int(c.Frames)), num(c.FramesPerSec), c.CPUS, c.CPUPerPubUs, c.CPUS/float64(max(1, c.Frames))*1e6)
		}
		if len(r.Cost) == 2 {
			off, on := r.Cost[0], r.Cost[1]
			fmt.Fprintf(&b, "\nHistory on adds %+.1f µs of server CPU per publish (%+.0f%%), %+.3f µs per delivered frame; on a shared machine, differences of a few per cent are noise.\n",
				on.CPUPerPubUs-off.CPUPerPubUs, (on.CPUPerPubUs/off.CPUPerPubUs-1)*100,
				on.CPUS/float64(max(1, on.Frames))*1e6-off.CPUS/float64(max(1, off.Frames))*1e6)
		}
		b.WriteString("\n")
	}
	m := r.Memory
	fmt.Fprintf(&b, "**Memory per retained message**: %s messages of %d B published to %d topics with history and no subscriber: Go heap (after a GC) %s, RSS %s, `wsd_history_bytes` %s (%.0f B per message); **%.0f B of heap per message** (%.0f B RSS).\n\n",
		thousands(m.Messages), m.Size, m.Topics, mib(float64(m.HeapGrowth)), mib(float64(m.RSSGrowth)), mib(float64(m.HistoryBytes)), float64(m.HistoryBytes)/float64(max(1, m.Messages)), m.HeapPerMsg, m.RSSPerMsg)
	s := r.Resume
	fmt.Fprintf(&b, "**Resume**: %s `?format=json` clients of `h.resume` note their position from the `subscribed` ack and close; %d messages are published; they reconnect with `?since=h.resume:OFFSET:EPOCH`, 64 dialing at a time. "+
		"%d answered `\"recovered\":true` and %d got every missed message once and in order (sequence-checked). **All resumed in %.2f s** (from the first dial to the last message), %s messages/s; per client from its dial to its last missed message: p50 %.1f ms, p99 %.1f ms; server CPU %.2f s.\n",
		thousands(s.Clients), s.Missed, s.Recovered, s.Complete, s.Seconds, num(s.MessagesPer), s.P50Ms, s.P99Ms, s.CPUS)
	if s.FirstErr != "" {
		fmt.Fprintf(&b, "\nFirst error: %s\n", s.FirstErr)
	}
	return b.String()
}
