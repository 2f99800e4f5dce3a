package fault

import (
	"testing"

	"github.com/rangestore/rangestore/internal/leakcheck"
)

// TestMain fails the binary if a delay queue's goroutine (or any other)
// outlives the tests.
func TestMain(m *testing.M) { leakcheck.Main(m) }
