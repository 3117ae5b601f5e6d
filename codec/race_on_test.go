//go:build race

package codec

// raceEnabled reports whether the race detector is on. It makes sync.Pool
// drop a random share of Put calls, so allocation guards that rely on the pool
// are skipped under it.
const raceEnabled = true
