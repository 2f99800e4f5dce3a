//go:build !race

package node

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = false
