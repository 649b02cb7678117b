package model

import (
	"fmt"
	"strings"
)

// AuditAnnotation enables the audit log for a namespace's pods: "deny"
// logs the new connections their policies deny, "allow" those a policy (or
// no isolation) lets through, "deny,allow" both, "off" neither. The agent
// writes the log only when it runs with --audit-log.
const AuditAnnotation = "ovs-netpol.io/audit"

// AuditMode is a set of verdicts to log.
type AuditMode uint8

const (
	// AuditDeny logs denied new connections.
	AuditDeny AuditMode = 1 << iota
	// AuditAllow logs allowed new connections.
	AuditAllow
)

// Deny and Allow report whether the mode logs that verdict.
func (m AuditMode) Deny() bool  { return m&AuditDeny != 0 }
func (m AuditMode) Allow() bool { return m&AuditAllow != 0 }

// String renders the mode as the annotation's canonical value.
func (m AuditMode) String() string {
	switch m & (AuditDeny | AuditAllow) {
	case AuditDeny:
		return "deny"
	case AuditAllow:
		return "allow"
	case AuditDeny | AuditAllow:
		return "deny,allow"
	}
	return "off"
}

// ParseAuditMode reads an audit mode: "off", or a comma-separated list of
// "deny" and "allow", each at most once, lower case, without spaces (the
// annotation's and the --audit-all flag's syntax).
func ParseAuditMode(value string) (AuditMode, error) {
	if value == "off" {
		return 0, nil
	}
	// The longest valid value is "deny,allow": a much longer one (an
	// annotation may hold 256 KiB) is refused before it is split, quoting
	// its start.
	if len(value) > 32 {
		return 0, fmt.Errorf("%q... (%d bytes) is not an audit mode (want deny, allow, deny,allow or off)", value[:32], len(value))
	}
	var m AuditMode
	for _, tok := range strings.Split(value, ",") {
		var bit AuditMode
		switch tok {
		case "deny":
			bit = AuditDeny
		case "allow":
			bit = AuditAllow
		default:
			return 0, fmt.Errorf("%q is not an audit mode (want deny, allow, deny,allow or off)", value)
		}
		if m&bit != 0 {
			return 0, fmt.Errorf("%q names %s twice (want deny, allow, deny,allow or off)", value, tok)
		}
		m |= bit
	}
	return m, nil
}

// ParseAuditAnnotation interprets a namespace's AuditAnnotation; present is
// whether the annotation exists. A value that is not understood leaves
// logging off and returns an error that says why.
func ParseAuditAnnotation(value string, present bool) (AuditMode, error) {
	if !present {
		return 0, nil
	}
	m, err := ParseAuditMode(value)
	if err != nil {
		return 0, fmt.Errorf("annotation %s: %w; audit logging stays off for the namespace", AuditAnnotation, err)
	}
	return m, nil
}
