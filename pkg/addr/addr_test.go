package addr

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
)

func TestSubtract(t *testing.T) {
	tests := []struct {
		cidr   string
		except []string
		want   string
	}{
		{"10.0.0.0/8", nil, "[10.0.0.0/8]"},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, "[10.0.0.0/32 10.0.0.2/31]"},
		{"10.0.0.0/24", []string{"10.0.0.0/25"}, "[10.0.0.128/25]"},
		{"10.0.0.0/24", []string{"10.0.0.0/16"}, "[]"},
		{"10.0.0.0/24", []string{"192.168.0.0/16", "fd00::/8"}, "[10.0.0.0/24]"},
		{"0.0.0.0/0", []string{"128.0.0.0/1"}, "[0.0.0.0/1]"},
		{"fd00::/126", []string{"fd00::3/128"}, "[fd00::/127 fd00::2/128]"},
	}
	for _, tt := range tests {
		var ex []netip.Prefix
		for _, e := range tt.except {
			ex = append(ex, netip.MustParsePrefix(e))
		}
		got := fmt.Sprint(Subtract(netip.MustParsePrefix(tt.cidr), ex))
		if got != tt.want {
			t.Errorf("Subtract(%s, %v) = %s, want %s", tt.cidr, tt.except, got, tt.want)
		}
	}
}

// TestSubtractExhaustive checks every address of a small block against the
// set definition, for random exceptions.
func TestSubtractExhaustive(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	base := netip.MustParsePrefix("10.1.0.0/24")
	for round := 0; round < 200; round++ {
		var ex []netip.Prefix
		for i := 0; i < rng.Intn(4); i++ {
			a := netip.AddrFrom4([4]byte{10, 1, 0, byte(rng.Intn(256))})
			ex = append(ex, netip.PrefixFrom(a, 24+rng.Intn(9)).Masked())
		}
		got := Subtract(base, ex)
		for i := 0; i < 256; i++ {
			a := netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
			want := true
			for _, e := range ex {
				if e.Contains(a) {
					want = false
				}
			}
			n := 0
			for _, p := range got {
				if p.Contains(a) {
					n++
				}
			}
			if (n == 1) != want || n > 1 {
				t.Fatalf("except %v: %s covered %d times, want in=%v (result %v)", ex, a, n, want, got)
			}
		}
	}
}

func TestRangeMasks(t *testing.T) {
	tests := []struct {
		lo, hi uint16
		n      int
	}{
		{80, 80, 1}, {80, 81, 1}, {80, 95, 1}, {1, 65535, 16}, {0, 65535, 1}, {32000, 32768, 3}, {1, 1024, 11},
	}
	for _, tt := range tests {
		ms := RangeMasks(tt.lo, tt.hi)
		if len(ms) != tt.n {
			t.Errorf("RangeMasks(%d,%d) = %v: %d pairs, want %d", tt.lo, tt.hi, ms, len(ms), tt.n)
		}
		for p := 0; p <= 65535; p++ {
			n := 0
			for _, m := range ms {
				if uint16(p)&m.Mask == m.Value {
					n++
				}
			}
			in := p >= int(tt.lo) && p <= int(tt.hi)
			if (in && n != 1) || (!in && n != 0) {
				t.Fatalf("RangeMasks(%d,%d): port %d matched %d times", tt.lo, tt.hi, p, n)
			}
		}
	}
}
