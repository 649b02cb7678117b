package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"

	"github.com/ovs-netpol/ovs-netpol/pkg/ovsdb"
)

// Time limits. A runtime gives a plugin no deadline; ovs-vswitchd assigns an
// ofport within milliseconds when it runs at all.
const (
	connectTimeout = 10 * time.Second
	cmdTimeout     = 60 * time.Second
)

// Add implements CNI ADD: veth pair, IPAM, addresses and routes in the pod,
// TX checksum offload off if configured, and the host end as a pod port of
// the bridge. On failure it undoes what it did.
func Add(args *skel.CmdArgs) (err error) {
	conf, err := LoadConf(args.StdinData)
	if err != nil {
		return err
	}
	pod, err := LoadPodArgs(args.Args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()

	// OVSDB first: an unreachable switch fails the ADD before anything is
	// created.
	ovs, err := connect(ctx, conf)
	if err != nil {
		return err
	}
	defer ovs.Close()

	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "cannot open the pod's network namespace "+args.Netns, err.Error())
	}
	defer netns.Close()
	hostNS, err := openHostNS(conf)
	if err != nil {
		return hostNSError(conf, err)
	}
	defer hostNS.Close()

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	hostName := HostVethName(args.ContainerID, args.IfName)
	var hostIf, contIf net.Interface
	err = netns.Do(func(ns.NetNS) error {
		var err error
		hostIf, contIf, err = ip.SetupVethWithName(args.IfName, hostName, conf.MTU, "", hostNS)
		return err
	})
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("cannot create the veth pair %s (in %s) / %s", args.IfName, args.Netns, hostName), err.Error())
	}
	undo = append(undo, func() { _ = deleteHostVeth(hostNS, hostName) })
	if err := hostNS.Do(func(ns.NetNS) error { return quietHostVeth(hostName) }); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("cannot configure %s", hostName), err.Error())
	}

	delegateArgs()
	r, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
	if err != nil {
		return ipamError("ADD", conf.IPAM.Type, err)
	}
	undo = append(undo, func() { _ = ipam.ExecDel(conf.IPAM.Type, args.StdinData) })
	result, err := types100.NewResultFromResult(r)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("cannot convert the result of IPAM plugin %q", conf.IPAM.Type), err.Error())
	}
	if len(result.IPs) == 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("IPAM plugin %q returned no IP address", conf.IPAM.Type), "")
	}
	result.Interfaces = []*types100.Interface{
		{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String(), Mtu: hostIf.MTU},
		{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Mtu: contIf.MTU, Sandbox: args.Netns},
	}
	for _, ipc := range result.IPs {
		ipc.Interface = types100.Int(1)
	}

	err = netns.Do(func(ns.NetNS) error {
		if err := ipam.ConfigureIface(args.IfName, result); err != nil {
			return err
		}
		if conf.TxOffloadOff() {
			return disableTxChecksum(args.IfName)
		}
		return nil
	})
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("cannot configure %s in %s", args.IfName, args.Netns), err.Error())
	}

	ext := map[string]string{
		ovsdb.KeyContainerID: args.ContainerID,
		ovsdb.KeyAttachedMAC: contIf.HardwareAddr.String(),
	}
	for k, v := range map[string]types.UnmarshallableString{
		ovsdb.KeyPodNamespace: pod.K8S_POD_NAMESPACE,
		ovsdb.KeyPodName:      pod.K8S_POD_NAME,
		ovsdb.KeyPodUID:       pod.K8S_POD_UID,
	} {
		if v != "" {
			ext[k] = string(v)
		}
	}
	// A failed AddPodPort may leave the row (e.g. vswitchd could not open
	// the device): remove it too.
	undo = append(undo, func() {
		dctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		_ = ovs.DelPodPort(dctx, conf.Bridge, hostName)
	})
	if _, err = ovs.AddPodPort(ctx, conf.Bridge, hostName, ext); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("cannot add %s to OVS bridge %s", hostName, conf.Bridge), err.Error())
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// quietHostVeth keeps the host's own network stack out of the pod's
// traffic on the host end of its veth (in the current namespace). With the
// userspace datapath the veth is an ordinary interface of the host: besides
// ovs-vswitchd, the host's stack sees every frame the pod sends. It would
// answer the pod's ARP requests for the gateway address with the veth's
// MAC (so the pod would send to a MAC that the bridge's gateway port does
// not have), and it would route, through kube-proxy's rules, a second copy
// of what the pod addresses to it. arp_ignore=8 ("reply for no local
// address") and no IPv6 on the veth leave the pod only the bridge (with the
// kernel datapath the port belongs to OVS and the stack never sees it).
func quietHostVeth(name string) error {
	for key, value := range map[string]string{
		"net/ipv4/conf/" + name + "/arp_ignore":   "8",
		"net/ipv6/conf/" + name + "/disable_ipv6": "1",
	} {
		if _, err := sysctl.Sysctl(key, value); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
	}
	return nil
}

// Del implements CNI DEL. Everything already gone (network namespace, veth,
// port, address) is fine; it tries every step and reports the first error.
func Del(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	hostName := HostVethName(args.ContainerID, args.IfName)
	var errs []error

	if ovs, err := connect(ctx, conf); err != nil {
		errs = append(errs, err)
	} else {
		if err := ovs.DelPodPort(ctx, conf.Bridge, hostName); err != nil {
			errs = append(errs, types.NewError(types.ErrInternal, fmt.Sprintf("cannot delete port %s from OVS bridge %s", hostName, conf.Bridge), err.Error()))
		}
		ovs.Close()
	}

	// Deleting either end deletes the pair. The host end is the one to
	// delete: the pod's namespace may be gone already (and the pair with it).
	var gone ns.NSPathNotExistErr
	if hostNS, err := openHostNS(conf); err == nil {
		if err := deleteHostVeth(hostNS, hostName); err != nil {
			errs = append(errs, types.NewError(types.ErrInternal, "cannot delete veth "+hostName, err.Error()))
		}
		hostNS.Close()
	} else if !errors.As(err, &gone) {
		errs = append(errs, hostNSError(conf, err))
	}

	delegateArgs()
	if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
		errs = append(errs, ipamError("DEL", conf.IPAM.Type, err))
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Check implements CNI CHECK: the IPAM plugin's check, the pod interface
// with the MAC, addresses and routes of prevResult, the host end, and the
// bridge port with an ofport and the pod's identity.
func Check(args *skel.CmdArgs) error {
	conf, err := LoadConf(args.StdinData)
	if err != nil {
		return err
	}
	pod, err := LoadPodArgs(args.Args)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult", "")
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "cannot convert prevResult", err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()

	delegateArgs()
	if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
		return ipamError("CHECK", conf.IPAM.Type, err)
	}

	var cont *types100.Interface
	for _, i := range prev.Interfaces {
		if i.Name == args.IfName && i.Sandbox == args.Netns {
			cont = i
		}
	}
	if cont == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("prevResult has no interface %s in %s", args.IfName, args.Netns), "")
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "cannot open the pod's network namespace "+args.Netns, err.Error())
	}
	defer netns.Close()
	err = netns.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(args.IfName)
		if err != nil {
			return err
		}
		if _, ok := link.(*netlink.Veth); !ok {
			return fmt.Errorf("%s is a %s, not a veth", args.IfName, link.Type())
		}
		if mac := link.Attrs().HardwareAddr.String(); cont.Mac != "" && mac != cont.Mac {
			return fmt.Errorf("%s has MAC %s, prevResult says %s", args.IfName, mac, cont.Mac)
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, prev.IPs); err != nil {
			return err
		}
		return ip.ValidateExpectedRoute(prev.Routes)
	})
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("interface %s in %s does not match prevResult", args.IfName, args.Netns), err.Error())
	}

	hostName := HostVethName(args.ContainerID, args.IfName)
	hostNS, err := openHostNS(conf)
	if err != nil {
		return hostNSError(conf, err)
	}
	defer hostNS.Close()
	if err := hostNS.Do(func(ns.NetNS) error {
		_, err := netlinksafe.LinkByName(hostName)
		return err
	}); err != nil {
		return types.NewError(types.ErrInternal, "host end of the veth is missing: "+hostName, err.Error())
	}

	ovs, err := connect(ctx, conf)
	if err != nil {
		return err
	}
	defer ovs.Close()
	p, ok := ovs.Port(conf.Bridge, hostName)
	switch {
	case !ok:
		return types.NewError(types.ErrInternal, fmt.Sprintf("OVS bridge %s has no port %s", conf.Bridge, hostName), "")
	case p.OFPort <= 0:
		return types.NewError(types.ErrInternal, fmt.Sprintf("OVS port %s has no valid ofport (%d)", hostName, p.OFPort), "")
	case p.Namespace != string(pod.K8S_POD_NAMESPACE) || p.Name != string(pod.K8S_POD_NAME) || p.ContainerID != args.ContainerID:
		return types.NewError(types.ErrInternal, fmt.Sprintf("OVS port %s belongs to %s/%s (container %s), not to %s/%s (container %s)",
			hostName, p.Namespace, p.Name, p.ContainerID, pod.K8S_POD_NAMESPACE, pod.K8S_POD_NAME, args.ContainerID), "")
	case cont.Mac != "" && p.MAC.String() != cont.Mac:
		return types.NewError(types.ErrInternal, fmt.Sprintf("OVS port %s has attached-mac %s, prevResult says %s", hostName, p.MAC, cont.Mac), "")
	}
	return nil
}

func connect(ctx context.Context, conf *NetConf) (*ovsdb.Client, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := ovsdb.Connect(cctx, conf.OVSDB, nil)
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, "cannot connect to OVSDB at "+conf.OVSDB, err.Error())
	}
	return c, nil
}

func openHostNS(conf *NetConf) (ns.NetNS, error) {
	if conf.HostNetNS == "" {
		return ns.GetCurrentNS()
	}
	return ns.GetNS(conf.HostNetNS)
}

func hostNSError(conf *NetConf, err error) error {
	return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("cannot open the host network namespace %q", conf.HostNetNS), err.Error())
}

// delegateArgs makes the IPAM plugin ignore CNI_ARGS keys it does not know
// (host-local fails on the K8S_* keys otherwise). Kubernetes runtimes pass
// IgnoreUnknown=1 themselves; other callers may not.
func delegateArgs() {
	a := os.Getenv("CNI_ARGS")
	if a == "" || strings.Contains(strings.ToLower(a), "ignoreunknown=") {
		return
	}
	os.Setenv("CNI_ARGS", "IgnoreUnknown=1;"+a)
}

// deleteHostVeth deletes the host end of a veth; a missing one is fine.
func deleteHostVeth(hostNS ns.NetNS, name string) error {
	return hostNS.Do(func(ns.NetNS) error {
		if err := ip.DelLinkByName(name); err != nil && !errors.Is(err, ip.ErrLinkNotFound) {
			return err
		}
		return nil
	})
}

// ipamError keeps the delegate's CNI error code and says which plugin failed.
func ipamError(cmd, plugin string, err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(te.Code, fmt.Sprintf("IPAM plugin %q %s: %s", plugin, cmd, te.Msg), te.Details)
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("IPAM plugin %q %s failed", plugin, cmd), err.Error())
}
