package inspect

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

// serviceJob is one connection from a local pod to a Service's cluster IP
// and port.
type serviceJob struct {
	from   string // the pod, namespace/name
	column string // "NS/NAME PORT/PROTO"
	svc    string
	ip     netip.Addr
	probe  Probe
}

// serviceJobs lists, for every source pod, every Service port with a
// cluster IP (TCP or UDP) in each family the pod has. The columns are the
// Service ports, in order.
func serviceJobs(c *model.Cluster, sources []verifyPeer) (jobs []serviceJob, columns []string) {
	keys := make([]string, 0, len(c.Services))
	for k := range c.Services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type port struct {
		svc    *model.Service
		probe  Probe
		column string
	}
	var ports []port
	for _, k := range keys {
		svc := c.Services[k]
		if len(svc.ClusterIPs) == 0 {
			continue // headless or ExternalName: nothing is balanced
		}
		for _, sp := range svc.Ports {
			if sp.Protocol != model.TCP && sp.Protocol != model.UDP {
				continue
			}
			pr := Probe{Protocol: sp.Protocol, Port: sp.Port}
			p := port{svc: svc, probe: pr, column: fmt.Sprintf("%s %s", svc.Key(), pr)}
			ports = append(ports, p)
			columns = append(columns, p.column)
		}
	}
	for _, s := range sources {
		for _, p := range ports {
			for _, fp := range familyPairs(s.ips, p.svc.ClusterIPs) {
				jobs = append(jobs, serviceJob{from: s.label, column: p.column, svc: p.svc.Key(), ip: fp[1], probe: p.probe})
			}
		}
	}
	return jobs, columns
}

// verifyService traces a new connection from a local pod to a Service's
// cluster IP and port through explain (which decides it for the backend
// the bridge's load balancer picked, or, without endpoints, for the
// source's egress toward the cluster IP) and turns the answer into a cell.
func (e *Explainer) verifyService(ctx context.Context, v *NodeView, j serviceJob) (VerifyCell, bool, error) {
	x, err := e.Explain(j.from, j.ip.String(), j.probe.Protocol, j.probe.Port)
	if err != nil {
		return VerifyCell{}, false, err
	}
	if err := e.TraceOn(ctx, v, x); err != nil {
		return VerifyCell{}, false, err
	}
	t := x.Trace
	if t == nil {
		return VerifyCell{}, false, nil // the notes say why; counted as not checked
	}
	c := VerifyCell{From: j.from, To: j.column, Service: j.svc, Probe: j.probe, Family: familyName(j.ip), Enforces: t.Enforces,
		ModelAllowed: strings.HasPrefix(t.Expected, "delivered"), Delivered: t.Delivered, Bridge: t.Verdict, Backend: t.Backend,
		Mismatch: x.Mismatch}
	c.Model = t.Expected
	switch {
	case t.Backend != "":
		c.Model = fmt.Sprintf("%s (for the backend the bridge picked, %s)", t.Expected, t.Backend)
	case x.Service != nil:
		c.Model = fmt.Sprintf("%s (Service port %s)", t.Expected, x.Service.Handling)
	}
	if c.Mismatch == "" && !t.Agrees {
		c.Mismatch = "the bridge " + t.Verdict + ", the model expects " + t.Expected
	}
	if c.Mismatch != "" {
		c.Packet = t.Packet
		if n := len(t.Steps); n > 0 {
			c.Decisive = fmt.Sprintf("%s [%s]", t.Steps[n-1].TraceStep, t.Steps[n-1].Origin)
		}
	}
	return c, true, nil
}

// serviceMatrix renders the Service cells: one matrix per family, rows the
// source pods, columns the Service ports (numbered as in the legend).
func (r *VerifyResult) serviceMatrix(b *strings.Builder) {
	if len(r.ServiceCells) == 0 {
		return
	}
	col := map[string]int{}
	for i, s := range r.ServicePorts {
		col[s] = i
	}
	fmt.Fprintf(b, "\nService ports (cluster IP:port; the mark is the verdict for the backend the bridge picked):\n")
	for i, s := range r.ServicePorts {
		fmt.Fprintf(b, "  %c %s\n", serviceColumnMark(i), printable.String(s))
	}
	rows := map[string]int{}
	for i, e := range r.Endpoints {
		rows[e] = i
	}
	for _, family := range []string{"IPv4", "IPv6"} {
		marks := map[[2]int]byte{}
		var from []int
		for _, c := range r.ServiceCells {
			if c.Family != family {
				continue
			}
			k := [2]int{rows[c.From], col[c.To]}
			if _, seen := marks[k]; !seen && !containsInt(from, k[0]) {
				from = append(from, k[0])
			}
			marks[k] = cellMark(c)
		}
		if len(marks) == 0 {
			continue
		}
		sort.Ints(from)
		fmt.Fprintf(b, "\nvia Services%s (rows: from, columns: Service ports)\n    ", v6Suffix(family))
		for j := range r.ServicePorts {
			b.WriteByte(serviceColumnMark(j))
		}
		b.WriteByte('\n')
		for _, i := range from {
			fmt.Fprintf(b, " %2d ", i+1)
			for j := range r.ServicePorts {
				m, ok := marks[[2]int{i, j}]
				if !ok {
					m = ' '
				}
				b.WriteByte(m)
			}
			b.WriteByte('\n')
		}
	}
}

// serviceColumnMark names Service column i: a-z, A-Z, then digits, then
// wrapping (the legend stays the reference).
func serviceColumnMark(i int) byte {
	const marks = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	return marks[i%len(marks)]
}

func containsInt(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func cellMark(c VerifyCell) byte {
	switch {
	case c.Mismatch != "":
		return '!'
	case c.ModelAllowed:
		return '.'
	}
	return 'X'
}

// verifyServices traces jobs with workers in parallel and records the
// cells, mismatches and count in res.
func (e *Explainer) verifyServices(ctx context.Context, v *NodeView, jobs []serviceJob, workers int, res *VerifyResult) error {
	start := time.Now()
	defer func() { res.ServiceDuration = time.Since(start) }()
	cells := make([]VerifyCell, len(jobs))
	traced := make([]bool, len(jobs))
	errs := make([]error, len(jobs))
	ch := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				cells[i], traced[i], errs[i] = e.verifyService(ctx, v, jobs[i])
			}
		}()
	}
	for i := range jobs {
		select {
		case ch <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s -> Service %s cluster IP %s: %w", jobs[i].from, jobs[i].column, jobs[i].ip, err)
		}
	}
	for i, c := range cells {
		if !traced[i] {
			res.Skipped["connections to cluster IPs explain could not trace here"]++
			continue
		}
		res.ServiceCells = append(res.ServiceCells, c)
		if c.Mismatch != "" {
			res.ServiceMismatches = append(res.ServiceMismatches, c)
		}
	}
	res.ServiceTraces = len(res.ServiceCells)
	return nil
}
