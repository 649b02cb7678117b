package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestExplainOffline runs explain on the seed's manifests (-f): verdicts,
// deciding rules and isolating policies in text and JSON, and the errors
// of bad input (no trace is attempted offline).
func TestExplainOffline(t *testing.T) {
	seed := "../../examples/seed"
	cases := []struct {
		name    string
		args    []string
		wantErr string
		want    []string
	}{
		{name: "allowed by the seed's rule",
			args: []string{"--from", "default/frontend", "--to", "default/db", "--port", "6379"},
			want: []string{"model verdict: ALLOWED", "allowed by policy default/test-network-policy ingress rule 0", "egress: pod default/frontend is not isolated for egress"}},
		{name: "pod name without a namespace takes -n",
			args: []string{"-n", "default", "--from", "frontend", "--to", "db", "--port", "6379"},
			want: []string{"model verdict: ALLOWED"}},
		{name: "denied: wrong port",
			args: []string{"--from", "default/frontend", "--to", "default/db", "--port", "80"},
			want: []string{"model verdict: DENIED", "isolated for ingress by namespace default is annotated DefaultDeny, policy default/test-network-policy"}},
		{name: "through the db Service",
			args: []string{"--from", "myproject/client", "--to", "10.96.0.10", "--port", "6379"},
			want: []string{"Service default/db port 6379: balanced over 1 backend(s)", "backend pod default/db (10.244.1.10) on node node-1 port 6379: allowed"}},
		{name: "through the db Service as IP:PORT",
			args: []string{"--from", "myproject/client", "--to", "10.96.0.10:6379"},
			want: []string{"Service default/db port 6379: balanced over 1 backend(s)"}},
		{name: "IP:PORT and a different --port", args: []string{"--from", "myproject/client", "--to", "10.96.0.10:6379", "--port", "80"}, wantErr: "name different ports"},
		{name: "from the node", args: []string{"--from", "172.18.0.1", "--to", "default/db", "--protocol", "udp"},
			want: []string{"traffic from the pod's own node is always allowed"}},
		{name: "v1.6 semantics", args: []string{"--isolation", "v1.6", "--from", "other/stranger", "--to", "default/db", "--port", "6379"},
			want: []string{"model verdict: DENIED"}},
		{name: "bad protocol", args: []string{"--from", "default/frontend", "--to", "default/db", "--protocol", "ICMP"}, wantErr: "--protocol"},
		{name: "bad port", args: []string{"--from", "default/frontend", "--to", "default/db", "--port", "70000"}, wantErr: "--port 70000"},
		{name: "bad output", args: []string{"--from", "default/frontend", "--to", "default/db", "-o", "yaml"}, wantErr: "-o yaml"},
		{name: "bad trace mode", args: []string{"--from", "default/frontend", "--to", "default/db", "--trace", "sometimes"}, wantErr: "--trace sometimes"},
		{name: "unknown pod", args: []string{"--from", "default/ghost", "--to", "default/db"}, wantErr: "no pod default/ghost"},
		{name: "missing --to", args: []string{"--from", "default/frontend"}, wantErr: `"to" not set`},
		{name: "a tracing request without a switch", args: []string{"--from", "default/frontend", "--to", "default/db", "--trace", "always", "--ovs-rundir", "/nonexistent"}, wantErr: "tracing on this node"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := execute(t, "ovs-netpol", append([]string{"explain", "-f", seed}, c.args...)...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q\n%s", err, c.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "trace on node") {
				t.Errorf("offline explain traced:\n%s", out)
			}
		})
	}
	out, err := execute(t, "ovs-netpol", "explain", "-f", seed, "--from", "default/backend", "--to", "default/db", "--port", "6379", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	// Warnings go to stderr, which execute merges: the JSON starts at "{".
	var x struct {
		Allowed bool
		Paths   []struct {
			Ingress struct {
				Isolated   bool
				IsolatedBy []string
			}
		}
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &x); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if x.Allowed || len(x.Paths) != 1 || !x.Paths[0].Ingress.Isolated || len(x.Paths[0].Ingress.IsolatedBy) != 2 {
		t.Fatalf("JSON verdict %+v", x)
	}
}

// TestVerifyRefuses: verify's bad input, and a node without a reachable
// bridge, are errors that say what is wrong.
func TestVerifyRefuses(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-o", "yaml"}, "-o yaml"},
		{[]string{"--parallel", "0"}, "--parallel 0"},
		{[]string{"--max-traces", "-1"}, "--max-traces -1"},
		{[]string{"--external-ip", "10.0.0.1/8"}, "--external-ip 10.0.0.1/8"},
		{[]string{"--ovs-rundir", "/nonexistent", "--timeout", "2s"}, "/nonexistent/db.sock"},
	}
	for _, c := range cases {
		out, err := execute(t, "ovs-netpol", append([]string{"verify"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("verify %v: error %v, want one containing %q\n%s", c.args, err, c.wantErr, out)
		}
	}
}
