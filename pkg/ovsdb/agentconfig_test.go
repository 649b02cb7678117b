package ovsdb

import (
	"testing"
	"time"
)

// TestBridgeExternalID sets, replaces and reads a Bridge external_ids key on
// a real ovsdb-server, checks that other keys survive and that ovs-vsctl
// sees the same value, and that a missing key or bridge is told apart.
func TestBridgeExternalID(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 20*time.Second)
	vsctl(t, s, "br-set-external-id", br, "other-key", "kept")

	if _, ok, err := c.BridgeExternalID(ctx, br, KeyAgentConfig); err != nil || ok {
		t.Fatalf("before any write: ok %v, err %v; want absent", ok, err)
	}
	steps := []string{`{"node":"n1"}`, `{"node":"n2","mode":"v1.6"}`, `value with "quotes", commas=and spaces`}
	for _, want := range steps {
		if err := c.SetBridgeExternalID(ctx, br, KeyAgentConfig, want); err != nil {
			t.Fatal(err)
		}
		got, ok, err := c.BridgeExternalID(ctx, br, KeyAgentConfig)
		if err != nil || !ok || got != want {
			t.Fatalf("read back %q (ok %v, err %v), want %q", got, ok, err, want)
		}
		if v := vsctl(t, s, "br-get-external-id", br, KeyAgentConfig); v != want {
			t.Errorf("ovs-vsctl sees %q, want %q", v, want)
		}
	}
	if v := vsctl(t, s, "br-get-external-id", br, "other-key"); v != "kept" {
		t.Errorf("other key: %q, want kept", v)
	}
	if _, _, err := c.BridgeExternalID(ctx, "no-such-bridge", KeyAgentConfig); err == nil {
		t.Error("reading a missing bridge: no error")
	}
	if err := c.SetBridgeExternalID(ctx, "no-such-bridge", KeyAgentConfig, "x"); err == nil {
		t.Error("writing a missing bridge: no error")
	}
}
