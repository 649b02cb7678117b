package inspect

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

func dotted(b []byte) string {
	h := make([]string, len(b))
	for i := range b {
		h[i] = hex.EncodeToString(b[i : i+1])
	}
	return strings.Join(h, ".")
}

func TestAuditNote(t *testing.T) {
	deny := compiler.AuditNote{Verdict: "deny", Direction: model.Ingress, Reasons: []string{"default/(DefaultDeny)", "default/db-only"}}
	allow := compiler.AuditNote{Verdict: "allow", Direction: model.Egress, Reasons: []string{"shop/web#0"}}
	tests := []struct {
		name, actions, want string
		ok                  bool
	}{
		{"deny", "controller(userdata=" + dotted(deny.Bytes()) + ",meter_id=5111809)",
			"audit log: deny ingress, isolated by default/(DefaultDeny), default/db-only", true},
		{"allow, then on", "controller(userdata=" + dotted(allow.Bytes()) + ",meter_id=5111810),goto_table:40",
			"audit log: allow egress by shop/web#0", true},
		{"not ours", "controller(userdata=01.02.03,meter_id=1)", "", false},
		{"not hex", "controller(userdata=zz,meter_id=1)", "", false},
		{"no controller", "goto_table:50", "", false},
		{"a control character in a reason is quoted", "controller(userdata=" + dotted([]byte("ovsnp-audit1 deny ingress a/b\x1bc")) + ")",
			`"audit log: deny ingress, isolated by a/b\x1bc"`, true},
	}
	for _, tc := range tests {
		got, ok := auditNote(tc.actions)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: auditNote = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
