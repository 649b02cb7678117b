package compiler

// Every flow priority of the pipeline, per table, in one place. Each
// group's comment names its table(s) before the colon; each constant's
// comment says why it sits where it does. The "Priorities" table of
// flows/README.md lists the same tables, names, values and reasons
// (TestPrioritiesDocumented keeps the two equal). Values are literals, not
// arithmetic on each other: what matters is their order within a table.

// All tables: the last resort.
const (
	PrioDefault uint16 = 0 // the table's default action (drop, or on to the next table)
)

// Table 0 (classify): port security.
const (
	prioClassifyND       uint16 = 110 // neighbour discovery: before the IP and ARP flows of the same port
	prioClassifySpoofed  uint16 = 106 // a local pod's address from the gateway, uplink or tunnel: dropped before any accept
	prioClassifyNodeIP   uint16 = 105 // the node's own addresses from the gateway: marked node-local, before the plain gateway accept
	prioClassifyHairpin  uint16 = 103 // a reply to a pod's hairpin address: its destination restored, before port security
	prioClassifyPort     uint16 = 100 // a local pod's port: only its own MAC and addresses
	prioClassifyGateway  uint16 = 100 // the gateway and uplink ports: routed traffic, policed like any source
	prioClassifyTunnelIn uint16 = 100 // the tunnel: what a remote node may send (its pod CIDRs and addresses)
)

// Table 10 (conntrack): IP through conntrack.
const (
	prioConntrack uint16 = 100 // IP (and IPv6) through conntrack with nat; anything else drops
)

// Table 20 (ct_state): the conntrack verdicts, in order.
const (
	prioCTInvalid     uint16 = 200 // invalid packets never pass
	prioCTEstablished uint16 = 190 // established connections policy allowed (ct_mark clear) pass
	prioCTRelated     uint16 = 180 // related traffic of allowed connections passes
	prioCTReply       uint16 = 170 // a reply in a connection only the balancer committed: dropped
	prioCTNew         uint16 = 10  // new connections, and balanced ones not allowed yet: on to the Services and policy
)

// Tables 25–28 (Service load balancing): see services.go.
const (
	prioServicePort     uint16 = 100 // table 25: a Service port's address
	prioAffinityEntry   uint16 = 100 // table 26: the entries learn() writes (the action's priority)
	prioAffinityBackend uint16 = 100 // table 27: the remembered backend, while it is one
	prioAffinityChoose  uint16 = 90  // table 27: no (valid) entry: pick one, below the remembered backends
	prioAffinityLearn   uint16 = 100 // table 28: remember the pick and go to it
)

// Tables 30 (egress) and 40 (ingress): policy. 50000–59999 are reserved
// for the Admin tier of cluster-wide policies, 10000–19999 for the
// Baseline tier.
const (
	PrioInfra        uint16 = 65000 // node-local traffic, and a pod to itself: always allowed
	PrioRuleAllow    uint16 = 30001 // a rule that constrains only its targets: never shares a priority with conjunctions
	PrioRuleConj     uint16 = 30000 // a rule's conjunction flows and conj_id flow (tiers just below: see tiers.go)
	PrioIsolation    uint16 = 20000 // an isolated pod: nothing above allowed it, drop
	PrioAuditDefault uint16 = 1     // audit of a pod not isolated: below every tier (Baseline too), above the default it stands in for
)

// Table 50 (commit): allowed connections are committed.
const (
	prioCommit uint16 = 100 // IP (and IPv6) committed, the balancer's mark cleared; anything else drops
)

// Table 60 (forward): delivery by destination address.
const (
	prioDeliverND     uint16 = 110 // neighbour solicitations for a local pod's IPv6 address: to its port
	prioHairpin       uint16 = 107 // a pod reaching itself through a Service: source rewritten, back out of its port
	prioDeliverInPort uint16 = 105 // to a local pod from its own port (replies of its hairpins): back out of it
	prioDeliver       uint16 = 100 // a local pod's address (IP, ARP): to its port
	prioRemoteND      uint16 = 100 // a pod of another node (flat L2), neighbour solicitations: to the uplink, below local ND
	prioRemote        uint16 = 90  // a pod of another node (flat L2), IP and ARP: to the uplink, below local delivery
	prioTunnelOut     uint16 = 90  // a remote node's pod CIDRs and addresses (overlay): to the tunnel, below local delivery
)
