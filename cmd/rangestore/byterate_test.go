package main

import "testing"

func TestParseByteRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"32MiB", 32 << 20, true},
		{"32MiB/s", 32 << 20, true},
		{"32mib", 32 << 20, true},
		{"1.5GiB", 3 << 29, true},
		{"500KB", 500000, true},
		{"2MB/s", 2000000, true},
		{"4096", 4096, true},
		{"4096B", 4096, true},
		{"0", 0, true},
		{" 8 KiB ", 8 << 10, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1MiB", 0, false},
		{"12 parsecs", 0, false},
		{"1e30GiB", 0, false},
		{"NaN", 0, false},
	} {
		got, err := parseByteRate(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseByteRate(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}
