package compiler

import (
	"strings"
	"testing"
)

func TestParseBindings(t *testing.T) {
	good := "# comment\n\ndefault/db 5 0a:58:0a:00:00:01\nx/a 6 02:00:00:00:00:02\n"
	b, err := ParseBindings(strings.NewReader(good), "ports")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 || b["default/db"].OFPort != 5 || b["x/a"].MAC.String() != "02:00:00:00:00:02" {
		t.Errorf("got %v", b)
	}
	for _, tc := range []struct{ in, err string }{
		{"db 5 0a:58:0a:00:00:01", "ports:1: pod \"db\" is not NAMESPACE/NAME"},
		{"a/b 0 0a:58:0a:00:00:01", "ports:1: OpenFlow port \"0\""},
		{"a/b 70000 0a:58:0a:00:00:01", "OpenFlow port \"70000\""},
		{"a/b 5 zz", "\"zz\" is not an Ethernet MAC"},
		{"a/b 5", "want \"NAMESPACE/NAME OFPORT MAC\""},
		{"a/b 5 0a:58:0a:00:00:01\na/b 6 0a:58:0a:00:00:02", "ports:2: pod a/b bound twice"},
		{"a/b 5 0a:58:0a:00:00:01\na/c 5 0a:58:0a:00:00:02", "ports:2: port 5 already bound to a/b"},
	} {
		_, err := ParseBindings(strings.NewReader(tc.in), "ports")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseBindings(%q) = %v, want error containing %q", tc.in, err, tc.err)
		}
	}
}
