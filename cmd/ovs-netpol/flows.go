package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

type flowsOptions struct {
	nodeOptions
	pod, policy, table string
}

func flowsCmd() *cobra.Command {
	var o flowsOptions
	cmd := &cobra.Command{
		Use:   "flows [--pod NS/NAME] [--policy NS/NAME] [--table NAME|NUMBER]",
		Short: "Show this node's live flows by table, each with its origin and packet counters",
		Long: `Dumps every flow of the node's bridge (ovs-ofctl -O OpenFlow15 dump-flows on
OVS-RUNDIR/BRIDGE.mgmt) and prints them grouped by pipeline table (names as in
flows/README.md), each with its n_packets and n_bytes and its origin:

  policy NS/NAME ingress rule 0   a NetworkPolicy rule (egress likewise)
  pod NS/NAME                     a local pod's port security, delivery, isolation
  remote pod NS/NAME              forwarding to a pod of another node
  node N (gateway port P)         the node's own traffic
  service NS/NAME                 a Service's load balancing
  learned by service NS/NAME      a session-affinity entry ovs-vswitchd learned
  pipeline skeleton               table defaults and conntrack
  unknown (not ours or stale)     a flow the cluster's current state does not
                                  explain: another controller's, or ours from a
                                  state the agent has not caught up with

A flow that matches conj_id=N, or carries conjunction(N,k/n) actions, also
names the rule of each conjunction ("; conj_id N: policy ...", or "N (this
rule)" when it is the rule the cookie names): a flow shared by several rules
serves each of them. The packet counters of a rule's conj_id
flow count the new connections that rule allowed (the flows it is made of
count nothing: that is how OVS conjunctions work). Established connections
pass in table 20 and are not counted per rule.

Naming origins needs the cluster (--kubeconfig): the command lists it and
compiles the node's view with the settings the agent published on the bridge
and the pods' ports from OVSDB, as the agent does. Without a kubeconfig it
prints each flow's cookie kind only (pipeline, pod, rule, node, service) and
says so; --pod and --policy need the cluster.

Filters (combined with AND; a NAME without NAMESPACE/ is in -n's namespace,
else the kubeconfig context's, else default):
  --table NAME|NUMBER  one table (classify, conntrack, ct_state, service,
                       affinity, affinity_dnat, affinity_learn, egress,
                       ingress, commit, forward, or its number)
  --policy NS/NAME     the flows of that policy's rules: their cookie is one
                       of its rules', or their conj_id or one of their
                       conjunction() actions is one of its rules' (a flow
                       shared with other rules is listed too). The isolation
                       drop of the pods it selects is the pod's flow (--pod).
  --pod NS/NAME        the pod's own flows (its cookie) and every flow that
                       matches one of its IPs exactly as source or
                       destination, its OpenFlow port (in_port), or outputs to
                       that port. Flows that reach the pod through a wider
                       CIDR (an ipBlock peer, the pipeline's defaults) or a
                       conjunction of other flows' matches are not listed:
                       use ovs-netpol explain for one packet's path.

` + nodeFlagsHelp + `

Examples:
  ovs-netpol flows --kubeconfig ~/.kube/config --policy shop/allow-frontend
  ovs-netpol flows --pod shop/db-0 --table ingress
  ovs-netpol flows -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			table, err := parseTable(o.table)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			rows, notes, err := flowRows(ctx, o, table)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "ovs-netpol flows:", n)
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			return writeFlowsText(cmd.OutOrStdout(), rows)
		},
	}
	addNodeFlags(cmd, &o.nodeOptions)
	f := cmd.Flags()
	f.StringVar(&o.pod, "pod", "", "only the flows of this pod (NAMESPACE/NAME, or NAME in -n's namespace)")
	f.StringVar(&o.policy, "policy", "", "only the flows of this NetworkPolicy's rules (NAMESPACE/NAME, or NAME in -n's namespace)")
	f.StringVar(&o.table, "table", "", "only this table (name or number)")
	return cmd
}

// allTables is parseTable's "no filter".
const allTables = -1

// parseTable reads --table: a pipeline table name or a number 0-254.
func parseTable(s string) (int, error) {
	if s == "" {
		return allTables, nil
	}
	for n, name := range compiler.TableNames {
		if name == s {
			return int(n), nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 255 {
		names := slices.Sorted(maps.Values(compiler.TableNames))
		return 0, fmt.Errorf("--table %s: not a table number (0-254) or name (%s)", printable.String(s), strings.Join(names, ", "))
	}
	return int(n), nil
}

// flowRow is one live flow as `flows` prints it.
type flowRow struct {
	Table        uint8    `json:"table"`
	TableName    string   `json:"tableName,omitempty"`
	Priority     uint16   `json:"priority"`
	Cookie       string   `json:"cookie"`
	Match        string   `json:"match"`
	Actions      string   `json:"actions"`
	Packets      uint64   `json:"packets"`
	Bytes        uint64   `json:"bytes"`
	ConjID       uint32   `json:"conjID,omitempty"`
	Conjunctions []uint32 `json:"conjunctions,omitempty"`
	// Origin is the origin's description (with a kubeconfig) or the
	// cookie kind ("rule", "pod", ... or "not ours") without one.
	Origin string `json:"origin"`
}

// flowRows reads, annotates, filters and sorts the bridge's flows. The
// notes say what the output lacks (no kubeconfig) and what surprised in the
// cluster (the compiled view's warnings).
func flowRows(ctx context.Context, o flowsOptions, table int) ([]flowRow, []string, error) {
	if o.pod != "" {
		o.pod = qualify(o.pod)
	}
	if o.policy != "" {
		o.policy = qualify(o.policy)
	}
	for _, key := range []struct{ flag, val string }{{"--pod", o.pod}, {"--policy", o.policy}} {
		if ns, name, _ := strings.Cut(key.val, "/"); key.val != "" && (ns == "" || name == "" || strings.Contains(name, "/")) {
			return nil, nil, fmt.Errorf("%s %s: want NAMESPACE/NAME or NAME", key.flag, printable.String(key.val))
		}
	}
	var node *inspect.Node
	var notes []string
	if _, err := o.client(); errors.Is(err, errNoKubeconfig) {
		if o.pod != "" || o.policy != "" {
			return nil, nil, fmt.Errorf("--pod and --policy need the cluster: %w", err)
		}
		notes = append(notes, "no kubeconfig: origins are shown as cookie kinds only (pass --kubeconfig to name pods, policies and rules)")
	} else {
		v, err := o.loadNodeView(ctx, true)
		if err != nil {
			return nil, nil, err
		}
		node = v.node
		notes = append(notes, node.Warnings...)
		if o.policy != "" && !hasPolicy(node, o.policy) {
			return nil, nil, fmt.Errorf("--policy %s: no such NetworkPolicy in the cluster", printable.String(o.policy))
		}
		if o.pod != "" && !hasPod(node, o.pod) {
			return nil, nil, fmt.Errorf("--pod %s: no such pod in the cluster", printable.String(o.pod))
		}
	}
	flows, err := o.bridge().Flows(ctx)
	if err != nil {
		return nil, nil, err
	}
	var rows []flowRow
	for _, f := range flows {
		if table != allTables && int(f.Table) != table {
			continue
		}
		if o.policy != "" && !node.OfPolicy(f, o.policy) {
			continue
		}
		if o.pod != "" && !node.OfPod(f, o.pod) {
			continue
		}
		r := flowRow{Table: f.Table, TableName: compiler.TableNames[f.Table], Priority: f.Priority, Cookie: f.Cookie.String(),
			Match: f.Match, Actions: f.Actions, Packets: f.Packets, Bytes: f.Bytes, ConjID: f.ConjID, Conjunctions: f.Conjunctions}
		if node != nil {
			r.Origin = node.Origin(f)
		} else if f.Cookie.IsOurs() {
			r.Origin = f.Cookie.Kind().String()
		} else {
			r.Origin = "not ours"
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b flowRow) int {
		switch {
		case a.Table != b.Table:
			return int(a.Table) - int(b.Table)
		case a.Priority != b.Priority:
			return int(b.Priority) - int(a.Priority)
		case a.Cookie != b.Cookie:
			return strings.Compare(a.Cookie, b.Cookie)
		}
		return strings.Compare(a.Match, b.Match)
	})
	return rows, notes, nil
}

func hasPolicy(n *inspect.Node, key string) bool {
	for _, p := range n.Cluster.Policies {
		if p.Key() == key {
			return true
		}
	}
	return false
}

func hasPod(n *inspect.Node, key string) bool {
	for _, p := range n.Cluster.Pods {
		if p.Key() == key {
			return true
		}
	}
	return false
}

// writeFlowsText prints the rows grouped by table:
//
//	table 40 ingress (3 flows)
//	  priority=30000,conj_id=7 actions=goto_table:50
//	    packets 5, bytes 370, cookie 0x4e03...: policy a/b ingress rule 0; conj_id 7 (this rule)
func writeFlowsText(w io.Writer, rows []flowRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no flows")
		return err
	}
	for i := 0; i < len(rows); {
		j := i
		for j < len(rows) && rows[j].Table == rows[i].Table {
			j++
		}
		name := rows[i].TableName
		if name == "" {
			name = "(not a table of ours)"
		}
		fmt.Fprintf(w, "table %d %s (%d flows)\n", rows[i].Table, name, j-i)
		for _, r := range rows[i:j] {
			m := "priority=" + strconv.Itoa(int(r.Priority))
			if r.Match != "" {
				m += "," + r.Match
			}
			fmt.Fprintf(w, "  %s actions=%s\n", printable.String(m), printable.String(r.Actions))
			fmt.Fprintf(w, "    packets %d, bytes %d, cookie %s: %s\n", r.Packets, r.Bytes, r.Cookie, printable.String(r.Origin))
		}
		i = j
	}
	return nil
}
