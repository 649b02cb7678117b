package inspect

import (
	"encoding/hex"
	"strings"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// auditNote reads the note of an audit flow's controller(userdata=...)
// action (dotted hex, as OVS prints it) into words: "audit log: deny
// ingress, isolated by NS/NAME ..." or "audit log: allow egress by
// NS/NAME#0". ok is false for actions without one of our notes.
func auditNote(actions string) (string, bool) {
	for _, a := range openflow.SplitTopLevel(actions) {
		inner, ok := strings.CutPrefix(a, "controller(")
		if !ok {
			continue
		}
		for _, arg := range openflow.SplitTopLevel(strings.TrimSuffix(inner, ")")) {
			h, ok := strings.CutPrefix(arg, "userdata=")
			if !ok {
				continue
			}
			b, err := hex.DecodeString(strings.ReplaceAll(h, ".", ""))
			if err != nil {
				return "", false
			}
			return auditNoteOf(b)
		}
	}
	return "", false
}

// auditNoteOf reads an audit flow's userdata (the bytes of the note) into
// words, as auditNote does.
func auditNoteOf(userdata []byte) (string, bool) {
	n, ok := compiler.ParseAuditNote(userdata)
	if !ok {
		return "", false
	}
	why := " by "
	if n.Verdict == "deny" {
		why = ", isolated by "
	}
	return printable.String("audit log: " + n.Verdict + " " + string(n.Direction) + why + strings.Join(n.Reasons, ", ")), true
}
