package wstest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Tool returns the path of the first of names found on PATH, for a test
// suite that runs an outside program (Node.js, Chromium). Without one the
// test fails, saying how to get it (install): a suite that cannot run must
// not pass. A developer who means to go without it sets the environment
// variable skip to 1; the test is then skipped, and make test says at its
// end which suites did not run.
func Tool(t testing.TB, skip, install string, names ...string) string {
	t.Helper()
	if os.Getenv(skip) == "1" {
		t.Skipf("%s=1: not running the tests that need %s", skip, strings.Join(names, " or "))
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not on PATH. To run these tests, %s. To skip them instead, set %s=1.",
		strings.Join(names, " or "), install, skip)
	return ""
}
