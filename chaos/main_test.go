package chaos

import (
	"testing"

	"github.com/rangestore/rangestore/internal/leakcheck"
)

// TestMain fails the package's tests if any goroutine is still running
// once they have finished, and removes the rangestore binary they built.
func TestMain(m *testing.M) {
	leakcheck.Main(m, RemoveBinary)
}
