//go:build race

package servers_test

// raceEnabled builds the servers under test with -race too, so that a data
// race in a server fails the test.
const raceEnabled = true
