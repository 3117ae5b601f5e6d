package abuse

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// ChildMain is the loadclient command. It connects flooders (-mode flood)
// or echo clients (-mode echo), prints "ready" (or "error: ..."), and obeys
// the lines of its stdin: "run" runs them (for at most -duration; "run 2s"
// for at most 2s), "stop" stops a run early. Each run ends with its report
// on stdout, as one JSON line. Flooders run once, until the server has
// closed every one (or -flood-timeout). ChildMain returns, closing the
// connections, once stdin is closed; it returns the process's exit status.
func ChildMain(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet("loadclient", flag.ContinueOnError)
	mode := fs.String("mode", "", "flood or echo")
	var fc FloodConfig
	var ec EchoConfig
	addr := fs.String("addr", "", "host:port of the daemon")
	conns := fs.Int("conns", 1, "connections")
	payload := fs.Int("payload", 64, "payload bytes per message")
	fs.IntVar(&fc.RcvBuf, "rcvbuf", 4096, "flood: SO_RCVBUF")
	fs.IntVar(&fc.Cap, "cap", 1<<20, "flood: the server's per-connection cap")
	fs.DurationVar(&fc.Timeout, "flood-timeout", 5*time.Second, "flood: a flooder not closed by the server by then fails")
	fs.DurationVar(&ec.Duration, "duration", 10*time.Second, "echo: how long a run lasts at most")
	fs.DurationVar(&ec.Timeout, "timeout", 5*time.Second, "echo: longest wait for an echo")
	fs.DurationVar(&ec.Interval, "interval", 0, "echo: a message every interval per client (0: no pause)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var run func(d time.Duration, stop <-chan struct{}) any
	switch *mode {
	case "flood":
		fc.Addr, fc.Conns, fc.Payload = *addr, *conns, *payload
		f, err := NewFlooders(fc)
		if err != nil {
			fmt.Fprintf(stdout, "error: %v\n", err)
			return 1
		}
		defer f.Close()
		run = func(time.Duration, <-chan struct{}) any { return f.Run() }
	case "echo":
		ec.Addr, ec.Conns, ec.Payload = *addr, *conns, *payload
		e, err := NewEchoClients(ec)
		if err != nil {
			fmt.Fprintf(stdout, "error: %v\n", err)
			return 1
		}
		defer e.Close()
		run = func(d time.Duration, stop <-chan struct{}) any { return e.Run(d, stop) }
	default:
		fmt.Fprintf(stdout, "error: -mode %q: want flood or echo\n", *mode)
		return 2
	}
	fmt.Fprintln(stdout, "ready")

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var (
		stop chan struct{} // not nil during a run
		done chan any
	)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if stop != nil {
					close(stop)
					<-done
				}
				return 0
			}
			cmd, arg, _ := strings.Cut(line, " ")
			switch {
			case cmd == "run" && stop == nil:
				d := ec.Duration
				if arg != "" {
					var err error
					if d, err = time.ParseDuration(arg); err != nil {
						fmt.Fprintf(stdout, "error: %q: %v\n", line, err)
						continue
					}
				}
				stop, done = make(chan struct{}), make(chan any, 1)
				go func() { done <- run(d, stop) }()
			case cmd == "stop" && stop != nil:
				close(stop)
				stop = make(chan struct{}) // closed already: a second stop is a no-op
			}
		case rep := <-done:
			stop, done = nil, nil
			b, err := json.Marshal(rep)
			if err != nil {
				fmt.Fprintf(stdout, "error: %v\n", err)
				continue
			}
			fmt.Fprintf(stdout, "%s\n", b)
		}
	}
}
