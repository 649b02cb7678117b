package compiler

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"strconv"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Service load balancing (flows/README.md, tables 25–28): a new connection
// from a pod to ClusterIP:port/protocol picks a backend in a select group
// (hash of the 5-tuple; with session affinity, the client's remembered
// backend or a multipath pick, see affinityFlows) and is committed with
// nat(dst=backend:targetPort),
// marked "balanced, not allowed yet" (ctMarkBalanced); policy then decides
// on the backend's address and port, and the commit in table 50 clears the
// mark. Replies are un-DNATed by the ct(nat) of table 10.

// ServiceCookie is the cookie of a Service's flows and (not installed,
// groups have none) groups.
func ServiceCookie(svc *model.Service) openflow.Cookie {
	return openflow.NewCookie(openflow.KindService, "service/"+svc.Key())
}

// Priorities in the Service tables.
const (
	prioServicePort     uint16 = 100 // table 25: a Service port's address
	prioAffinityEntry   uint16 = 100 // table 26: learned entries
	prioAffinityBackend uint16 = 100 // table 27: the remembered backend
	prioAffinityChoose  uint16 = 90  // table 27: no (valid) entry: choose
	prioAffinityLearn   uint16 = 100 // table 28: remember the pick, go to it
)

// affinityMaxSeconds is the longest idle_timeout OpenFlow can express
// (16 bits); longer sessionAffinity timeouts (the API allows 86400) are
// capped to it.
const affinityMaxSeconds = 65535

// serviceFamilyPort is one Service port on one cluster IP.
type serviceFamilyPort struct {
	vip netip.Addr
	sp  model.ServicePort
}

func (p serviceFamilyPort) ipv6() bool { return p.vip.Is6() }

// groupKey names the group of a Service port and family, for the group ID
// allocator: stable while the Service keeps the port.
func (p serviceFamilyPort) groupKey(svc *model.Service) string {
	fam := "4"
	if p.ipv6() {
		fam = "6"
	}
	return "svc/" + svc.Key() + "/" + p.sp.Name + "/" + string(p.sp.Protocol) + "/" + fam
}

// familyPorts lists a Service's ports on each of its cluster IPs, in order.
func familyPorts(svc *model.Service) []serviceFamilyPort {
	var out []serviceFamilyPort
	for _, vip := range svc.ClusterIPs {
		for _, sp := range svc.Ports {
			out = append(out, serviceFamilyPort{vip, sp})
		}
	}
	return out
}

// transport returns a protocol's match shorthand (protoNames), field
// prefix (tcp_src, udp_dst, ...) and IP protocol number.
func transport(p model.Protocol, ipv6 bool) (shorthand, field string, number int) {
	names := protoNames[p]
	shorthand = names[0]
	if ipv6 {
		shorthand = names[1]
	}
	switch p {
	case model.UDP:
		return shorthand, "udp", 17
	case model.SCTP:
		return shorthand, "sctp", 132
	}
	return shorthand, "tcp", 6
}

// serviceMatch is "tcp,nw_dst=VIP,tp_dst=PORT" (or its IPv6 form).
func (p serviceFamilyPort) match() string {
	sh, _, _ := transport(p.sp.Protocol, p.ipv6())
	return sh + "," + ipField(p.vip, "dst") + "=" + p.vip.String() + ",tp_dst=" + strconv.Itoa(int(p.sp.Port))
}

// natAction commits the connection DNATed to b, marked as balanced, and
// continues in table next.
func natAction(cfg Config, b model.Backend, next uint8) string {
	addr := b.Address.String()
	if b.Address.Is6() {
		addr = "[" + addr + "]"
	}
	return fmt.Sprintf("ct(commit,table=%d,zone=%d,nat(dst=%s:%d),exec(set_field:%s->ct_mark))", next, cfg.CTZone, addr, b.Port, ctMarkBalanced)
}

// bucketIDs gives each backend a bucket ID derived from its address and
// port (so a backend keeps its ID, and affinity entries naming it stay
// valid, while others come and go), never 0 (reg2=0 means "no entry") and
// below OpenFlow's reserved bucket IDs. backends must be sorted.
func bucketIDs(backends []model.Backend) []uint32 {
	ids := make([]uint32, len(backends))
	used := make(map[uint32]bool, len(backends))
	for i, b := range backends {
		h := fnv.New32a()
		h.Write(b.Address.AsSlice())
		h.Write([]byte{byte(b.Port >> 8), byte(b.Port)})
		id := h.Sum32() & 0x0fffffff
		for id == 0 || used[id] {
			id = (id + 1) & 0x0fffffff
		}
		used[id] = true
		ids[i] = id
	}
	return ids
}

// serviceResult is one Service's load balancing.
type serviceResult struct {
	flows  []openflow.Flow
	groups []openflow.Group
	// serving are, per UDP port and family, the backends that serve it
	// (model.ServingBackends): what the conntrack entries to it may keep;
	// while the port has no endpoints, also the port itself (the entries
	// of datagrams that went on to the host, not DNATed: once it has
	// backends, they are flushed so that the next datagrams are balanced).
	serving map[serviceFamilyPort]map[model.Backend]bool
	// groupKeys are the group ID keys the Service used.
	groupKeys []string
}

// serviceFlows compiles one Service for cfg.Node. slices are its
// EndpointSlices; groupID allocates group IDs by key.
func serviceFlows(cfg Config, svc *model.Service, slices []*model.EndpointSlice, groupID func(string) uint32) serviceResult {
	cookie := ServiceCookie(svc)
	f := func(table uint8, prio uint16, match, actions string) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: cookie, Match: match, Actions: actions}
	}
	res := serviceResult{serving: map[serviceFamilyPort]map[model.Backend]bool{}}
	for _, p := range familyPorts(svc) {
		if p.sp.Protocol == model.UDP {
			res.serving[p] = model.ServingBackends(svc, p.sp, p.ipv6(), slices)
		}
		backends, handling := model.Backends(svc, p.sp, p.ipv6(), slices, cfg.Node)
		switch handling {
		case model.NoEndpoints:
			if p.sp.Protocol == model.UDP {
				res.serving[p][model.Backend{Address: p.vip, Port: p.sp.Port}] = true
			}
			// Nothing here: the connection goes on, as to any address
			// outside the cluster's pods, to the host, where kube-proxy
			// rejects it (its "has no endpoints" rule).
			continue
		case model.NoLocalEndpoints:
			res.flows = append(res.flows, f(TableService, prioServicePort, p.match(), "drop"))
			continue
		}
		ids := bucketIDs(backends)
		if svc.AffinitySeconds > 0 {
			res.flows = append(res.flows, affinityFlows(cfg, svc, p, backends, ids, f)...)
			continue
		}
		key := p.groupKey(svc)
		buckets := make([]openflow.Bucket, len(backends))
		for i, b := range backends {
			buckets[i] = openflow.Bucket{ID: ids[i], Actions: natAction(cfg, b, TableEgress)}
		}
		groups, keys := splitGroup(key, cookie, hashFields(p), buckets, groupID)
		res.groups = append(res.groups, groups...)
		res.groupKeys = append(res.groupKeys, keys...)
		res.flows = append(res.flows, f(TableService, prioServicePort, p.match(), "group:"+strconv.FormatUint(uint64(groups[0].ID), 10)))
	}
	return res
}

// affinityFlows balance a Service port with session affinity (ClientIP):
// table 26 holds what learn() remembered of each client (reg2 = its
// backend's ID); table 27 goes to that backend while it is one, or else
// picks one (multipath: a hash of the 5-tuple, like the groups' buckets)
// into reg3; table 28 learns the pick and goes to it.
//
// Not a select group, because on OVS 3.1 a learn() in a group's bucket is
// dropped, and a register a bucket sets does not outlive the group
// (verified); and the learn() must run in the same pass as the pick:
// after the DNAT's recirculation the datapath caches the rest of the
// pipeline without the client's port, so later connections of the same
// client would skip the learn() (seen in e2e: entries not renewed after
// their timeout). multipath reads the transport ports: every new
// connection without an entry goes through ovs-vswitchd and is learned.
func affinityFlows(cfg Config, svc *model.Service, p serviceFamilyPort, backends []model.Backend, ids []uint32, f func(uint8, uint16, string, string) openflow.Flow) []openflow.Flow {
	flows := []openflow.Flow{
		f(TableService, prioServicePort, p.match(), fmt.Sprintf("resubmit(,%d),%s", TableAffinity, gotoTable(TableAffinityDNAT))),
		f(TableAffinityDNAT, prioAffinityChoose, p.match(),
			fmt.Sprintf("multipath(symmetric_l3l4+udp,0,hrw,%d,0,%s),%s", len(backends), nxmRegPick, gotoTable(TableAffinityLearn))),
	}
	cookie := ServiceCookie(svc)
	for i, b := range backends {
		nat := natAction(cfg, b, TableEgress)
		id := "0x" + strconv.FormatUint(uint64(ids[i]), 16)
		flows = append(flows,
			f(TableAffinityDNAT, prioAffinityBackend, regAffinity+"="+id+","+p.match(), nat),
			f(TableAffinityLearn, prioAffinityLearn, fmt.Sprintf("%s=%d,%s", regPick, i, p.match()), learnAction(svc, p, ids[i], cookie)+","+nat))
	}
	return flows
}

// maxBuckets bounds a group's buckets: a group is one OpenFlow message
// (at most 64 KiB), and an IPv6 bucket takes up to ~110 bytes (measured on
// OVS 3.1: 500 such buckets install, 700 are refused).
const maxBuckets = 400

// splitGroup makes the group of one Service port from its buckets. Up to
// maxBuckets it is one group; beyond, a group whose equally weighted
// buckets lead to sub-groups of (almost) equal size, so that every backend
// keeps (almost) the same share. The first group is the one flows send to;
// keys are the group ID keys used.
func splitGroup(key string, cookie openflow.Cookie, fields string, buckets []openflow.Bucket, groupID func(string) uint32) ([]openflow.Group, []string) {
	if len(buckets) <= maxBuckets {
		return []openflow.Group{{ID: groupID(key), Cookie: cookie, Fields: fields, Buckets: buckets}}, []string{key}
	}
	n := (len(buckets) + maxBuckets - 1) / maxBuckets
	top := openflow.Group{ID: groupID(key), Cookie: cookie, Fields: fields}
	groups, keys := []openflow.Group{top}, []string{key}
	for i := range n {
		subKey := key + "/part" + strconv.Itoa(i)
		sub := openflow.Group{ID: groupID(subKey), Cookie: cookie, Fields: fields,
			Buckets: buckets[i*len(buckets)/n : (i+1)*len(buckets)/n]}
		groups[0].Buckets = append(groups[0].Buckets, openflow.Bucket{ID: uint32(i + 1), Actions: "group:" + strconv.FormatUint(uint64(sub.ID), 10)})
		groups, keys = append(groups, sub), append(keys, subKey)
	}
	return groups, keys
}

// regAffinity holds, in tables 26–27, the ID of a client's remembered
// backend; regPick (nxmRegPick in NXM syntax), in tables 27–28, the index
// of the backend multipath picked.
const (
	regAffinity = "reg2"
	regPick     = "reg3"
	nxmRegPick  = "NXM_NX_REG3[]"
)

// hashFields are the 5-tuple fields a Service port's group hashes.
func hashFields(p serviceFamilyPort) string {
	_, tp, _ := transport(p.sp.Protocol, p.ipv6())
	ip := "ip"
	if p.ipv6() {
		ip = "ipv6"
	}
	return ip + "_src," + ip + "_dst," + tp + "_src," + tp + "_dst"
}

// learnAction remembers, for the client's address and the Service port,
// backend id, for the affinity timeout since the client's last new
// connection (idle_timeout: only new connections look the entry up).
// Written as OVS prints it.
func learnAction(svc *model.Service, p serviceFamilyPort, id uint32, cookie openflow.Cookie) string {
	_, tp, num := transport(p.sp.Protocol, p.ipv6())
	ethType, src, dst := "0x800", "NXM_OF_IP_SRC[]", "ip_dst"
	if p.ipv6() {
		ethType, src, dst = "0x86dd", "NXM_NX_IPV6_SRC[]", "ipv6_dst"
	}
	timeout := min(svc.AffinitySeconds, affinityMaxSeconds)
	return fmt.Sprintf("learn(table=%d,idle_timeout=%d,priority=%d,cookie=%s,eth_type=%s,nw_proto=%d,%s,%s=%s,%s_dst=%d,load:%#x->NXM_NX_REG2[])",
		TableAffinity, timeout, prioAffinityEntry, cookie.Learned(), ethType, num, src, dst, p.vip, tp, p.sp.Port, id)
}

// staleUDP returns the conntrack entries to delete when a Service goes
// from serving old to serving cur: for each UDP port and family it still
// has, the backends that no longer serve it (kube-proxy's reconciliation;
// a port or Service that is gone keeps its entries, as there).
func staleUDP(zone uint16, old, cur map[serviceFamilyPort]map[model.Backend]bool) []openflow.ConntrackFlush {
	var out []openflow.ConntrackFlush
	for p, now := range cur {
		for b := range old[p] {
			if now[b] {
				continue
			}
			out = append(out, openflow.ConntrackFlush{
				Zone: zone, Protocol: 17,
				ServiceIP: p.vip.String(), ServicePort: uint16(p.sp.Port),
				BackendIP: b.Address.String(), BackendPort: uint16(b.Port),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ServiceIP != b.ServiceIP {
			return a.ServiceIP < b.ServiceIP
		}
		if a.ServicePort != b.ServicePort {
			return a.ServicePort < b.ServicePort
		}
		if a.BackendIP != b.BackendIP {
			return a.BackendIP < b.BackendIP
		}
		return a.BackendPort < b.BackendPort
	})
	return out
}
