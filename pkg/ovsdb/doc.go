// Package ovsdb is the agent's and the CNI plugin's thin adapter to the
// Open_vSwitch database (OVSDB) of Open vSwitch 3.1: it creates the
// integration bridge, adds and removes pod ports, and lists the ports that
// belong to pods. It makes no policy decisions.
//
// # Pod ports
//
// A pod is attached through the host end of a veth pair, added to the bridge
// as an Interface of type "" (a system device) with its own Port. These
// external_ids on the Interface row bind it to the pod:
//
//	ovs-netpol.io/pod-namespace  KeyPodNamespace  the pod's namespace
//	ovs-netpol.io/pod-name       KeyPodName       the pod's name
//	ovs-netpol.io/pod-uid        KeyPodUID        the pod's UID, if known
//	ovs-netpol.io/container-id   KeyContainerID   the CNI container ID
//	attached-mac                 KeyAttachedMAC   the pod-side (container) MAC
//
// attached-mac follows the convention of OVN and ovs-vsctl users: the
// Interface's own mac_in_use column holds the MAC of the host end, which is
// never the source of the pod's packets. PodPorts reports a port only when
// its Interface has both the namespace and the name key and a valid ofport.
//
// # Tunnel port and LOCAL MAC (overlay)
//
// EnsureTunnelPort creates or repairs the agent's flow-based tunnel port
// (type "geneve", options remote_ip=flow and key=flow: one port serves
// every remote node, the flow sets tun_dst). OVS 3.1 refuses a second
// tunnel port with the same type, UDP port and key (ofport -1, "File
// exists"). SetBridgeHWAddr fixes the LOCAL port's MAC through
// Bridge.other_config:hwaddr, so the node's gateway MAC that other nodes
// write into their neighbour tables survives restarts. SetMTURequest pins
// the LOCAL port's MTU: ovs-vswitchd otherwise resets an internal port to
// the smallest MTU of the bridge's other ports whenever ports change.
//
// # Cache and reconnects
//
// The Client reads from libovsdb's cache, which monitors only the tables and
// columns this package uses (Open_vSwitch, Bridge, Port, Interface,
// Flow_Table). Counters such as Interface.statistics are deliberately not
// monitored: they change every few seconds and would wake every subscriber.
// The cache is updated asynchronously after a transaction, so every write
// here waits (through cache events, bounded by the caller's context) until
// the cache shows its effect: a following read or write sees it.
//
// libovsdb's own reconnect (WithReconnect) is not used: the Client watches
// DisconnectNotify and probes the server with echo requests, and after a
// disconnect dials a new connection with backoff and monitors again. Until
// that succeeds, reads keep answering from the last cache and writes fail
// with an error.
//
// # libovsdb pitfalls handled here
//
//   - Transact returns a nil error when an operation failed: results always
//     go through ovsdb.CheckOperationResults.
//   - An Update without explicit fields writes every column of the model,
//     and columns that are not monitored are zero in cached rows: updates
//     here always name their fields.
//   - Named UUIDs must match [A-Za-z_][A-Za-z0-9_]*.
//   - Bridge, Port, Interface and Flow_Table are not root tables: removing
//     the last reference deletes the row, so deleting a port is a mutation
//     of Bridge.ports and nothing else.
//
// # Open vSwitch 3.1 behaviour handled here
//
//   - ovs-vswitchd clears a bridge's flow table when its fail_mode changes.
//   - It ignores a table name that is a prefix of the table's current name
//     (it compares only the new name's length); EnsureBridge unnames such
//     tables in a first transaction.
//   - ofport is assigned asynchronously by ovs-vswitchd, or set to -1 with
//     Interface.error when it cannot open the device. Writes bump
//     Open_vSwitch.next_cfg and wait for cur_cfg to reach it (as ovs-vsctl
//     does), so an ofport read afterwards is ovs-vswitchd's answer.
//
// # Restarts of ovs-vswitchd and ovsdb-server (verified with real traffic, e2e/faults_test.go)
//
//   - After ovs-vswitchd restarts (kill -9 included) OVSDB still has the
//     bridge, its ports and settings, but every OpenFlow table is empty.
//     With fail_mode=secure, which EnsureBridge enforces, an empty table
//     drops everything: with the agent stopped and ovs-vswitchd restarted,
//     no probe passed, the allowed pair's included. With the userspace
//     datapath nothing is forwarded while ovs-vswitchd is down (the datapath
//     is in its process).
//   - The agent (cmd/ovs-netpol-agent, watchVswitchd) holds an OpenFlow
//     connection to BRIDGE.mgmt, which ovs-vswitchd closes when it exits;
//     when a connection succeeds again it asks for a full sync at once
//     (flows back 0.02-0.12 s after the bridge answered again). The flow
//     count check every 5 s stays as a backstop.
//   - other_config:flow-restore-wait is not used. Per the OVS manual it only
//     matters when set before ovs-vswitchd starts (then it neither processes
//     packets nor, with the kernel datapath, flushes the datapath flows of
//     the previous process until it is cleared), and "ovs-ctl restart" sets
//     it itself while it restores the flows it saved (ours included: the
//     agent then finds nothing to change). The window it closes, a restarted
//     switch handling packets by its default behaviour before its flows are
//     back, does not exist here: the default is drop (above). Set by the
//     agent, it would leave a switch that forwards nothing if the agent died
//     before clearing it.
//   - Userspace conntrack dies with ovs-vswitchd, but held TCP connections
//     survived a 1 s outage: a mid-stream segment (no SYN) is picked up as
//     a new connection and judged by the policy again.
//   - ovsdb-server killed and started again: ovs-vswitchd reconnects (its
//     backoff: 1 s) and the Client reconnects (above); no flow mods, ports
//     stay. With the userspace datapath and veth ports, held connections
//     stalled for up to 1 s meanwhile (longest echo 0.95-0.99 s): forwarding
//     pauses until ovs-vswitchd is back on its database.
package ovsdb
