package rafttls

import (
	"testing"

	"github.com/rangestore/rangestore/internal/leakcheck"
)

// TestMain fails the package's tests if any goroutine (the transports',
// Dragonboat's) is still running once they have finished.
func TestMain(m *testing.M) { leakcheck.Main(m) }
