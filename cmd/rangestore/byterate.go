package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteUnits are the units parseByteRate accepts (case-insensitive).
var byteUnits = []struct {
	name string
	mult float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"b", 1}, {"", 1},
}

// parseByteRate parses a byte rate such as "32MiB", "32MiB/s", "1.5GB" or
// "4096" (bytes per second). 0 is allowed; negative rates are not.
func parseByteRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	for _, u := range byteUnits {
		if !strings.HasSuffix(t, u.name) {
			continue
		}
		num := strings.TrimSpace(strings.TrimSuffix(t, u.name))
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" {
			break
		}
		if v < 0 || math.IsNaN(v) {
			return 0, fmt.Errorf("must not be negative")
		}
		b := v * u.mult
		if b > math.MaxInt64/2 {
			return 0, fmt.Errorf("too large")
		}
		return int64(b), nil
	}
	return 0, fmt.Errorf("not a byte rate: want a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB (per second), e.g. 32MiB")
}
