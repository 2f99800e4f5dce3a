package node

import "testing"

// TestFreeAddrNeverRepeats: addresses picked before any of them is bound
// (as a test does for its nodes) are all distinct.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := make(map[string]bool)
	for i := 0; i < 2000; i++ {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("FreeAddr returned %s twice (call %d)", a, i+1)
		}
		seen[a] = true
	}
}
