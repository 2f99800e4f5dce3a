//go:build race

package node

// raceEnabled: the test binary runs under the race detector (5-10x
// slower, which changes the timing some tests are about).
const raceEnabled = true
