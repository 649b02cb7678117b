package compiler

// Every flow priority of the pipeline, per table, in one place: the table
// "Priorities" of flows/README.md lists the same names and values
// (TestPrioritiesDocumented keeps the two equal). Values are literals, not
// arithmetic on each other: what matters is only their order within a
// table, which the comments give. Flows that may overlap within a table
// never share a priority unless they have the same verdict.

// PrioDefault is every table's last resort: the table's default action.
const PrioDefault uint16 = 0

// Table 0 (classify): port security.
const (
	prioClassifyND       uint16 = 110 // neighbour discovery: before the IP/ARP flows of the same port
	prioClassifySpoofed  uint16 = 106 // a local pod's address from the gateway, uplink or tunnel: dropped before any accept
	prioClassifyNodeIP   uint16 = 105 // the node's own addresses from the gateway: marked node-local, before the plain gateway accept
	prioClassifyHairpin  uint16 = 103 // a reply to a pod's hairpin address: its destination restored, before port security
	prioClassifyPort     uint16 = 100 // a local pod's port: only its own MAC and addresses
	prioClassifyGateway  uint16 = 100 // traffic from the gateway or uplink port: policed like any source
	prioClassifyTunnelIn uint16 = 100 // what a remote node may send through the tunnel: its pod CIDRs and addresses
)

// Table 10 (conntrack).
const prioConntrack uint16 = 100 // IP through conntrack (nat): everything else is dropped

// Table 20 (ct_state): the order of the conntrack verdicts.
const (
	prioCTInvalid     uint16 = 200 // invalid packets never pass
	prioCTEstablished uint16 = 190 // established connections policy allowed pass
	prioCTRelated     uint16 = 180 // related traffic of allowed connections passes
	prioCTReply       uint16 = 170 // a reply in a connection only the balancer committed: dropped
	prioCTNew         uint16 = 10  // new (and balanced, not yet allowed) connections: to the policy tables
)

// Tables 25–28: Service load balancing (services.go).
const (
	prioServicePort     uint16 = 100 // table 25: a Service port's address
	prioAffinityEntry   uint16 = 100 // table 26: learned entries (the learn() action's priority)
	prioAffinityBackend uint16 = 100 // table 27: the remembered backend, while it is one
	prioAffinityChoose  uint16 = 90  // table 27: no (valid) entry: choose, below the remembered backends
	prioAffinityLearn   uint16 = 100 // table 28: remember the pick, go to it
)

// Tables 30 (egress) and 40 (ingress): policy. The gaps are reserved for
// cluster-wide admin policy tiers: Admin above NetworkPolicy, Baseline
// below the NetworkPolicy isolation drop.
const (
	PrioInfra uint16 = 65000 // node-local traffic and a pod to itself: always allowed
	// 50000..59999: reserved for the Admin tier.
	PrioRuleAllow uint16 = 30001 // a rule that constrains only its targets: above the conjunctions it never mixes with
	PrioRuleConj  uint16 = 30000 // conjunctive rule flows and their conj_id flows (tiers below, see tiers.go)
	PrioIsolation uint16 = 20000 // isolated pod: nothing above allowed it
	// 10000..19999: reserved for the Baseline tier.
	// PrioAuditDefault is a not-isolated pod's allow audit flow: below
	// every policy tier (Baseline included, which may deny such a pod),
	// above the table's default that it stands in for.
	PrioAuditDefault uint16 = 1
)

// Table 50 (commit).
const prioCommit uint16 = 100 // IP is committed (allowed); everything else is dropped

// Table 60 (forward): delivery by destination address.
const (
	prioDeliverND     uint16 = 110 // neighbour solicitations for a local pod's IPv6 address: to its port
	prioHairpin       uint16 = 107 // a pod reaching itself through a Service: source rewritten, back out of its port
	prioDeliverInPort uint16 = 105 // a local pod's address from its own port (replies of its hairpins): back out of it
	prioDeliver       uint16 = 100 // a local pod's address (IP, ARP): to its port
	prioRemoteND      uint16 = 100 // another node's pod (flat L2), neighbour solicitations: below the local pods' ND
	prioRemote        uint16 = 90  // another node's pod (flat L2), IP and ARP: below local delivery
	prioTunnelOut     uint16 = 90  // a remote node's pod CIDRs and addresses (overlay): below local delivery
)
