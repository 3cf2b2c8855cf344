package tape

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first, so that "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"pb", 1e15},
	{"b", 1},
}

// ParseSize parses a size in bytes: a decimal number, optionally with a
// fraction, and an optional unit, case-insensitive: B, KB/MB/GB/TB/PB
// (powers of 1000) or KiB/MiB/GiB/TiB/PiB (powers of 1024). "4096",
// "512MiB", "1.5GB", "10 GiB". The result must be a whole number of bytes
// that fits in an int64.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	num, mult := in, int64(1)
	lower := strings.ToLower(in)
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.suffix) {
			num, mult = strings.TrimSpace(in[:len(in)-len(u.suffix)]), u.mult
			break
		}
	}
	if num == "" {
		return 0, fmt.Errorf("size %q: no number (want e.g. 4096, 512MiB, 1.5GB)", s)
	}
	if len(num) > 40 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	for _, c := range num {
		if (c < '0' || c > '9') && c != '.' {
			return 0, fmt.Errorf("size %q: %q is not a decimal number or unit (want e.g. 4096, 512MiB, 1.5GB; units B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)", s, num)
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || strings.Count(num, ".") > 1 || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, fmt.Errorf("size %q: %q is not a decimal number", s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() || r.Num().Int64() > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return r.Num().Int64(), nil
}
