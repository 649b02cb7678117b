package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
)

// TestSetupAuditFlags: flag combinations that cannot work are refused
// before anything touches the bridge; without --audit-log the compiler's
// configuration stays without auditing.
func TestSetupAuditFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		flags   auditFlags
		wantErr string
	}{
		{"off", auditFlags{all: "off", rate: 100, maxSizeMB: 1}, ""},
		{"all without a file", auditFlags{all: "deny", rate: 100, maxSizeMB: 1}, "--audit-all needs --audit-log"},
		{"bad all", auditFlags{path: filepath.Join(dir, "a.log"), all: "everything", rate: 100, maxSizeMB: 1}, "--audit-all"},
		{"zero rate", auditFlags{path: filepath.Join(dir, "a.log"), all: "off", rate: 0, maxSizeMB: 1}, "--audit-rate"},
		{"zero size", auditFlags{path: filepath.Join(dir, "a.log"), all: "off", rate: 1, maxSizeMB: 0}, "--audit-max-size"},
		{"negative backups", auditFlags{path: filepath.Join(dir, "a.log"), all: "off", rate: 1, maxSizeMB: 1, maxBackups: -1}, "--audit-max-backups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audit = tc.flags
			defer func() { audit = auditFlags{} }()
			var cfg compiler.Config
			_, err := setupAudit(context.Background(), "n", "br-int", dir, &cfg, logrus.New())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if cfg.Audit != (compiler.AuditConfig{}) {
				t.Errorf("audit configured: %+v", cfg.Audit)
			}
		})
	}
}
