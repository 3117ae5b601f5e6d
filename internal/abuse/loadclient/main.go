// Command loadclient runs the clients of the abuse tests in a process of
// their own: flooders that never read, or well-behaved echo clients (see
// package abuse). The tests build and start it. It ends by itself: a run is
// bounded in time, and it exits when its stdin closes, which happens when
// its parent ends too.
package main

import (
	"os"

	"github.com/wsdproject/wsd/internal/abuse"
)

func main() {
	os.Exit(abuse.ChildMain(os.Args[1:], os.Stdin, os.Stdout))
}
