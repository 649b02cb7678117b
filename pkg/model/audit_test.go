package model

import (
	"strings"
	"testing"
)

func TestParseAuditAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value   string
		present bool
		want    AuditMode
		wantErr bool
	}{
		{"", false, 0, false},
		{"deny", true, AuditDeny, false},
		{"allow", true, AuditAllow, false},
		{"deny,allow", true, AuditDeny | AuditAllow, false},
		{"allow,deny", true, AuditDeny | AuditAllow, false},
		{"off", true, 0, false},
		{"", true, 0, true},
		{"Deny", true, 0, true},
		{"deny, allow", true, 0, true},
		{"deny,deny", true, 0, true},
		{"deny,", true, 0, true},
		{"all", true, 0, true},
		{"deny,off", true, 0, true},
		{"deny\nallow", true, 0, true},
	} {
		got, err := ParseAuditAnnotation(tc.value, tc.present)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseAuditAnnotation(%q, %v) = %v, %v; want %v, error %v", tc.value, tc.present, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestAuditModeStringParses(t *testing.T) {
	for m := AuditMode(0); m < 4; m++ {
		back, err := ParseAuditMode(m.String())
		if err != nil || back != m {
			t.Errorf("%d: %q parses as %v, %v", m, m.String(), back, err)
		}
	}
}

// TestParseAuditModeLongValue: an annotation value can be 256 KiB; the
// error quotes only its start, so a rejection logged on each update of the
// namespace stays a short line.
func TestParseAuditModeLongValue(t *testing.T) {
	for _, value := range []string{strings.Repeat("x", 1<<18), "deny," + strings.Repeat("deny,", 1<<15), strings.Repeat("\n", 1<<16)} {
		_, err := ParseAuditAnnotation(value, true)
		if err == nil {
			t.Fatalf("%d bytes accepted", len(value))
		}
		if len(err.Error()) > 300 {
			t.Errorf("error of %d bytes for a value of %d bytes", len(err.Error()), len(value))
		}
		if !strings.Contains(err.Error(), "bytes") {
			t.Errorf("error %q does not say how long the value is", err)
		}
	}
}
