package inspect

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/manifest"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// pairServices are Services whose two backends are db (frontend may reach
// it on 6379) and backend (frontend's egress policy denies it). Several
// cluster IPs, because the bridge's select group picks one backend per
// 5-tuple: with four of them each source reaches both backends.
func pairServices() string {
	var b strings.Builder
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: pair-%[1]d, namespace: default}
spec:
  clusterIP: 10.96.0.3%[1]d
  ports: [{name: redis, port: 6379}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: pair-%[1]d
  namespace: default
  labels: {kubernetes.io/service-name: pair-%[1]d}
addressType: IPv4
ports: [{name: redis, protocol: TCP, port: 6379}]
endpoints:
- addresses: ["10.244.1.10"]
  conditions: {ready: true}
  nodeName: node-1
- addresses: ["10.244.1.12"]
  conditions: {ready: true}
  nodeName: node-1
`, i)
	}
	return b.String()
}

// pairNode is seedNode with pairServices added: the flows on the bridge
// and the explainer are recompiled from the larger set of objects.
func pairNode(t *testing.T) (*Explainer, *NodeView, func(del string)) {
	t.Helper()
	_, _, sw := seedNode(t)
	seed := seedObjects(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pair.yaml"), []byte(pairServices()), 0o644); err != nil {
		t.Fatal(err)
	}
	extra, err := manifest.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	seed.Services = append(seed.Services, extra.Services...)
	seed.EndpointSlices = append(seed.EndpointSlices, extra.EndpointSlices...)
	v, err := OpenNodeView(context.Background(), Bridge{RunDir: sw.Dir}, seed)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := NewExplainer(seed, model.ModeV1)
	if err != nil {
		t.Fatal(err)
	}
	install := func(del string) {
		t.Helper()
		if err := sw.InstallBundle("br-int", v.Node.Result.Text(false)); err != nil {
			t.Fatal(err)
		}
		if del == "" {
			return
		}
		if _, err := sw.Ofctl("-O", "OpenFlow15", "del-flows", "--strict", "br-int", del); err != nil {
			t.Fatal(err)
		}
	}
	install("")
	return e, v, install
}

func TestVerifyServicesOnOVS(t *testing.T) {
	e, v, install := pairNode(t)
	ctx := context.Background()
	res, err := e.Verify(ctx, v, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s%s", res.Matrix(), res.Summary())
	if len(res.Mismatches) != 0 || len(res.ServiceMismatches) != 0 {
		t.Fatalf("%d + %d mismatches on the agent's own flows", len(res.Mismatches), len(res.ServiceMismatches))
	}
	t.Logf("%d connections to cluster IPs in %v (%.0f µs per trace, explain and trace each)", res.ServiceTraces, res.ServiceDuration.Round(time.Millisecond),
		float64(res.ServiceDuration.Microseconds())/float64(max(res.ServiceTraces, 1)))
	// 3 local pods × 7 Service ports (db, empty, far, pair-1..4).
	if len(res.ServicePorts) != 7 || res.ServiceTraces != 21 {
		t.Fatalf("%d Service ports, %d traces; want 7, 21", len(res.ServicePorts), res.ServiceTraces)
	}
	const db, backend = "pod default/db (10.244.1.10)", "pod default/backend (10.244.1.12)"
	// frontend's cells through the pair Services, by the picked backend:
	// the verdict must be that backend's (db allowed, backend denied).
	picked := map[string]int{}
	for _, c := range res.ServiceCells {
		if c.From != "default/frontend" || !strings.HasPrefix(c.Service, "default/pair-") {
			continue
		}
		switch {
		case strings.HasPrefix(c.Backend, db):
			picked[db]++
			if !c.ModelAllowed || !c.Delivered {
				t.Errorf("%s via %s to db: model allowed %v, delivered %v; want both", c.From, c.To, c.ModelAllowed, c.Delivered)
			}
		case strings.HasPrefix(c.Backend, backend):
			picked[backend]++
			if c.ModelAllowed || c.Delivered {
				t.Errorf("%s via %s to backend: model allowed %v, delivered %v; want neither", c.From, c.To, c.ModelAllowed, c.Delivered)
			}
		default:
			t.Errorf("%s via %s: backend %q", c.From, c.To, c.Backend)
		}
	}
	// Every connection of frontend that reaches db, through any Service.
	toDB := 0
	for _, c := range res.ServiceCells {
		if c.From == "default/frontend" && strings.HasPrefix(c.Backend, db) {
			toDB++
		}
	}
	t.Logf("frontend's connections to the pair Services picked %v; %d of its Service connections reach db", picked, toDB)
	if picked[db] == 0 || picked[backend] == 0 {
		t.Fatalf("picked %v: the check needs both an allowed and a denied backend", picked)
	}
	if _, err := e.Verify(ctx, v, VerifyOptions{MaxTraces: 180 + 20}); err == nil || !strings.Contains(err.Error(), "would trace 201 connections") {
		t.Fatalf("the limit counts the Service cells: error %v", err)
	}

	cases := []struct {
		name, del string
		// mismatchDB: every connection of frontend reaching db through a
		// Service must be reported (and nothing else)
		mismatchDB bool
	}{
		{"db's ingress allow flow for frontend deleted", "table=40,priority=30000,ip,nw_src=10.244.1.11", true},
		{"the agent's flows reinstalled", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			install(c.del)
			res, err := e.Verify(ctx, v, VerifyOptions{Pods: []string{"default/frontend"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", res.Summary())
			reported := map[string]int{}
			for _, m := range res.ServiceMismatches {
				if m.Model == "" || m.Bridge == "" || m.Packet == "" || m.Decisive == "" || m.Backend == "" {
					t.Errorf("mismatch without both verdicts, packet, last flow and backend: %+v", m)
				}
				if strings.HasPrefix(m.Backend, db) {
					reported[db]++
				} else {
					reported[m.Backend]++
				}
			}
			if want := map[bool]int{true: toDB}[c.mismatchDB]; reported[db] != want {
				t.Errorf("%d mismatches through Services to db, want %d", reported[db], want)
			}
			if len(res.ServiceMismatches) != reported[db] {
				t.Errorf("mismatches %v: only those reaching db may be reported", reported)
			}
			if shown := strings.Contains(serviceRows(res.Matrix()), "!"); shown != c.mismatchDB {
				t.Errorf("the Service matrix shows a mismatch: %v, want %v", shown, c.mismatchDB)
			}
		})
	}
}

// serviceRows is the Service part of a rendered matrix.
func serviceRows(m string) string {
	_, after, _ := strings.Cut(m, "via Services")
	return after
}
