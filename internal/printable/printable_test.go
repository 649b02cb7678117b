package printable

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"default/db", "default/db"},
		{"ünïcödé", "ünïcödé"},
		{"a\ntable=0,actions=NORMAL", `"a\ntable=0,actions=NORMAL"`},
		{"a\rb", `"a\rb"`},
		{"a\u2028b", `"a\u2028b"`},
		{"a\u0085b", `"a\u0085b"`},
		{"a\x00b", `"a\x00b"`},
		{"a\xffb", `"a\xffb"`},
		{"tab\there", `"tab\there"`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
