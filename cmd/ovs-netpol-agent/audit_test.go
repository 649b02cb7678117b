package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		// lumberjack multiplies it by 2^20 in an int64: past 2^43 the size
		// is negative and every line fails to be written.
		{"size overflowing", auditFlags{path: filepath.Join(dir, "a.log"), all: "off", rate: 1, maxSizeMB: 1 << 44}, "--audit-max-size"},
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

// fakeOfctl writes an ovs-ofctl stand-in on a fresh PATH: dump-meters
// lists no meter, mod-meter succeeds, and add-meter fails its first
// failAdds calls (as on a datapath without meters, or a switch not yet
// listening) and succeeds after. It returns the file counting add-meter
// calls.
func fakeOfctl(t *testing.T, failAdds int) string {
	t.Helper()
	dir := t.TempDir()
	calls := filepath.Join(dir, "add-meter-calls")
	script := fmt.Sprintf(`#!/bin/sh
for a in "$@"; do
  case "$a" in
  dump-meters) echo "OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):"; exit 0 ;;
  mod-meter) exit 0 ;;
  add-meter)
    echo x >> %[1]s
    if [ "$(wc -l < %[1]s)" -le %[2]d ]; then echo "OFPT_ERROR (OF1.5): OFPMMFC_OUT_OF_METERS" >&2; exit 1; fi
    exit 0 ;;
  esac
done
echo "unexpected call: $*" >&2
exit 2
`, calls, failAdds)
	if err := os.WriteFile(filepath.Join(dir, "ovs-ofctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return calls
}

// TestSetupAuditWithoutMeters: when the meters cannot be created, the
// audit flows would send every denied packet to the agent unmetered (OVS
// accepts controller(meter_id=M) without meter M and never binds it
// later): the compiler configuration gets no audit flow, the agent goes
// on enforcing policy, and ovs_netpol_audit_active says the log is off.
func TestSetupAuditWithoutMeters(t *testing.T) {
	fakeOfctl(t, 1<<30)
	defer func(d time.Duration) { auditMeterWait = d }(auditMeterWait)
	auditMeterWait = 300 * time.Millisecond
	dir := t.TempDir()
	audit = auditFlags{path: filepath.Join(dir, "audit.log"), all: "deny", rate: 10, burst: 5, maxSizeMB: 1}
	defer func() { audit = auditFlags{} }()
	var cfg compiler.Config
	start, err := setupAudit(context.Background(), "n", "br-int", dir, &cfg, logrus.New())
	if err != nil {
		t.Fatalf("error %v: the agent would not enforce policy at all", err)
	}
	if cfg.Audit != (compiler.AuditConfig{}) {
		t.Errorf("audit flows configured without their meters: %+v", cfg.Audit)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start(ctx, &fakeController{}, reg)
	if v := gaugeValue(t, reg, "ovs_netpol_audit_active"); v != 0 {
		t.Errorf("ovs_netpol_audit_active %v, want 0", v)
	}
}

// gaugeValue reads a registered gauge (-1: not registered).
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// fakeController counts ReinstallMetered calls.
type fakeController struct{ reinstalls atomic.Int32 }

func (*fakeController) PodAt(netip.Addr) (string, bool) { return "", false }
func (c *fakeController) ReinstallMetered(context.Context) (int, error) {
	c.reinstalls.Add(1)
	return 1, nil
}

// TestAuditMetersRetriedAfterHello: a new ovs-vswitchd (its hello on
// BRIDGE.mgmt) whose meters cannot be created at once gets them later,
// and the metered flows are then added again (bound to them): a failed
// attempt is retried instead of leaving the flows unmetered until the
// next restart.
func TestAuditMetersRetriedAfterHello(t *testing.T) {
	dir := t.TempDir()
	audit = auditFlags{path: filepath.Join(dir, "audit.log"), all: "deny", rate: 10, burst: 5, maxSizeMB: 1}
	defer func() { audit = auditFlags{} }()
	calls := fakeOfctl(t, 0)
	var cfg compiler.Config
	start, err := setupAudit(context.Background(), "n", "br-int", dir, &cfg, logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	// From here on the next 3 add-meter calls fail: the restarted switch.
	if countLines(t, calls) != 2 {
		t.Fatalf("%d add-meter calls at setup, want 2", countLines(t, calls))
	}
	calls = fakeOfctl(t, 3)
	defer func(d time.Duration) { auditMeterRetry = d }(auditMeterRetry)
	auditMeterRetry = 20 * time.Millisecond

	// A switch that says hello on BRIDGE.mgmt, once.
	ln, err := net.Listen("unix", filepath.Join(dir, "br-int.mgmt"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte{0x06, 0, 0, 8, 0, 0, 0, 1})
		io.Copy(io.Discard, conn)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctrl := &fakeController{}
	reg := prometheus.NewRegistry()
	start(ctx, ctrl, reg)
	if v := gaugeValue(t, reg, "ovs_netpol_audit_active"); v != 1 {
		t.Errorf("ovs_netpol_audit_active %v, want 1", v)
	}
	// Wait (not a timed assertion: the bound only ends a hung test).
	for deadline := time.Now().Add(20 * time.Second); ctrl.reinstalls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if ctrl.reinstalls.Load() == 0 {
		t.Fatalf("metered flows never added again after %d add-meter attempts", countLines(t, calls))
	}
	t.Logf("add-meter attempts after the hello: %d; reinstalls: %d", countLines(t, calls), ctrl.reinstalls.Load())
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestKeepAuditMetersForced: a flood the meters did not limit (force) adds
// the metered flows again even when the meters were all there (flows added
// before them stay unmetered); a plain hello with the meters there does not.
func TestKeepAuditMetersForced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		force bool
		want  int32
	}{
		{"hello, meters there", false, 0},
		{"flood, meters there", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			kick := make(chan struct{}, 1)
			var force atomic.Bool
			force.Store(tc.force)
			ctrl := &fakeController{}
			done := make(chan struct{})
			go func() {
				keepAuditMeters(ctx, kick, &force, func(context.Context) (int, error) { return 0, nil },
					func(ctx context.Context) (int, error) { return ctrl.ReinstallMetered(ctx) }, logrus.New())
				close(done)
			}()
			kick <- struct{}{}
			// The third send waits until the keeper took the second: the
			// first one's work is done.
			kick <- struct{}{}
			kick <- struct{}{}
			cancel()
			<-done
			if got := ctrl.reinstalls.Load(); got != tc.want {
				t.Errorf("%d reinstalls, want %d", got, tc.want)
			}
		})
	}
}
