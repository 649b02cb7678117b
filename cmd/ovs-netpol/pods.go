package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ovs-netpol/ovs-netpol/pkg/inspect"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
)

func podsCmd() *cobra.Command {
	var o nodeOptions
	cmd := &cobra.Command{
		Use:     "pods",
		Aliases: []string{"ports"},
		Short:   "List the pods attached to this node's bridge: OpenFlow port, interface, MAC, IPs",
		Long: `Lists every pod our CNI plugin attached to the bridge, from the OVSDB
Interface rows it wrote (external_ids ovs-netpol.io/pod-namespace, pod-name,
pod-uid, attached-mac): the pod, its OpenFlow port, the host end of its
veth, the pod-side MAC and, with a kubeconfig, its IPs from the cluster.

With a kubeconfig each port is also checked against the cluster; NOTES says
  not in the cluster        no such pod (deleted; the port is left over)
  other UID (stale port)    the pod was recreated; this port is the old one's
  on node N, not M          the pod is scheduled elsewhere (the node name is
                            the one the agent published on the bridge)
  no IP                     the pod has no IP in its status yet
  no attached-mac           the agent gives the port no flows at all
Without a kubeconfig the IPS column is empty and only the last check is made.

` + nodeFlagsHelp + `

Examples:
  ovs-netpol pods
  ovs-netpol pods --kubeconfig /etc/kubernetes/admin.conf -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.checkOutput(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			rows, warnings, err := podRows(ctx, o)
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "ovs-netpol pods:", w)
			}
			if o.output == "json" {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			return writePodsText(cmd.OutOrStdout(), rows)
		},
	}
	addNodeFlags(cmd, &o)
	return cmd
}

// podRow is one attached pod as `pods` prints it.
type podRow struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	UID       string   `json:"uid,omitempty"`
	Interface string   `json:"interface"`
	OFPort    uint32   `json:"ofport"`
	MAC       string   `json:"mac,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	// Node is the pod's spec.nodeName (with a kubeconfig).
	Node  string   `json:"node,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// podRows reads the bridge's ports and, with a kubeconfig, the cluster's
// pods. The warnings say what could not be checked.
func podRows(ctx context.Context, o nodeOptions) ([]podRow, []string, error) {
	br := o.bridge()
	ports, err := br.Ports(ctx)
	if err != nil {
		return nil, nil, err
	}
	var warnings []string
	node := ""
	if ac, err := br.AgentConfig(ctx); err != nil {
		warnings = append(warnings, fmt.Sprintf("cannot check pods' nodes: %v", err))
	} else {
		node = ac.Node
	}
	var pods map[string]*model.Pod
	client, err := o.client()
	switch {
	case errors.Is(err, errNoKubeconfig):
		warnings = append(warnings, "no kubeconfig: IPs and pods are not read from the cluster ("+err.Error()+")")
	case err != nil:
		return nil, nil, err
	default:
		if pods, err = clusterPods(ctx, client); err != nil {
			return nil, nil, err
		}
	}
	rows := make([]podRow, 0, len(ports))
	for _, p := range ports {
		r := podRow{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Interface: p.Interface, OFPort: p.OFPort}
		if p.MAC != nil {
			r.MAC = p.MAC.String()
		} else {
			r.Notes = append(r.Notes, "no attached-mac")
		}
		if pods != nil {
			r.Notes = append(r.Notes, checkPod(&r, pods[p.Key()], p, node)...)
		}
		rows = append(rows, r)
	}
	// By pod (the bridge lists them by interface name, which is random).
	slices.SortStableFunc(rows, func(a, b podRow) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return rows, warnings, nil
}

// checkPod fills the row's IPs and node from the cluster's pod and says
// what does not fit.
func checkPod(r *podRow, pod *model.Pod, p inspect.Port, node string) []string {
	if pod == nil {
		return []string{"not in the cluster"}
	}
	var notes []string
	r.Node = pod.Node
	for _, ip := range pod.IPs {
		r.IPs = append(r.IPs, ip.String())
	}
	if p.UID != "" && p.UID != pod.UID {
		notes = append(notes, "other UID (stale port)")
	}
	if node != "" && pod.Node != node {
		notes = append(notes, fmt.Sprintf("on node %s, not %s", pod.Node, node))
	}
	if len(pod.IPs) == 0 {
		notes = append(notes, "no IP")
	}
	return notes
}

// clusterPods lists the cluster's pods by namespace/name, normalized as the
// agent reads them.
func clusterPods(ctx context.Context, client kubernetes.Interface) (map[string]*model.Pod, error) {
	out := map[string]*model.Pod{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := client.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for i := range l.Items {
			p, err := normalize.Pod(&l.Items[i])
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s: %w", printable.String(l.Items[i].Namespace), printable.String(l.Items[i].Name), err)
			}
			out[p.Key()] = p
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

func writePodsText(w io.Writer, rows []podRow) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tOFPORT\tINTERFACE\tMAC\tIPS\tNOTES")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return printable.String(s)
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", printable.String(r.Namespace+"/"+r.Name), r.OFPort,
			printable.String(r.Interface), dash(r.MAC), dash(strings.Join(r.IPs, ",")), dash(strings.Join(r.Notes, "; ")))
	}
	return tw.Flush()
}

// writeJSON prints v indented. encoding/json escapes control characters,
// so text read from the cluster or the switch is safe in it.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
