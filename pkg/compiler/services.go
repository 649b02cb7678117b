package compiler

import (
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

// transport returns a protocol's match shorthand (transportProto) and field
// prefix (tcp_src, udp_dst, ...).
func transport(p model.Protocol, ipv6 bool) (shorthand openflow.Protocol, field string) {
	shorthand = transportProto(p, ipv6)
	switch p {
	case model.UDP:
		return shorthand, "udp"
	case model.SCTP:
		return shorthand, "sctp"
	}
	return shorthand, "tcp"
}

// match is "tcp,nw_dst=VIP,tp_dst=PORT" (or its IPv6 form), after the
// fields before (none, or the affinity register).
func (p serviceFamilyPort) match(before ...openflow.Field) openflow.Match {
	sh, _ := transport(p.sp.Protocol, p.ipv6())
	var buf [4]openflow.Field
	return openflow.NewMatch(append(append(buf[:0], before...), sh, openflow.HostDst(p.vip), openflow.PortDst(uint16(p.sp.Port)))...)
}

// natAction commits the connection DNATed to b, marked as balanced, and
// continues in table next.
func natAction(cfg Config, b model.Backend, next uint8) openflow.CT {
	return openflow.CT{Commit: true, HasTable: true, Table: next, Zone: cfg.CTZone,
		NATDst:  netip.AddrPortFrom(b.Address, uint16(b.Port)),
		SetMark: openflow.SetCTMark{Value: ctMarkBalanced, Mask: ctMarkBalanced}}
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
	f := func(table uint8, prio uint16, match openflow.Match, actions ...openflow.Action) openflow.Flow {
		return openflow.Flow{Table: table, Priority: prio, Cookie: cookie, Match: match, Actions: openflow.Do(actions...)}
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
			res.flows = append(res.flows, f(TableService, prioServicePort, p.match()))
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
			buckets[i] = openflow.Bucket{ID: ids[i], Actions: []openflow.Action{natAction(cfg, b, TableEgress)}}
		}
		groups, keys := splitGroup(key, cookie, hashFields(p), buckets, groupID)
		res.groups = append(res.groups, groups...)
		res.groupKeys = append(res.groupKeys, keys...)
		res.flows = append(res.flows, f(TableService, prioServicePort, p.match(), openflow.ToGroup(groups[0].ID)))
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
func affinityFlows(cfg Config, svc *model.Service, p serviceFamilyPort, backends []model.Backend, ids []uint32, f func(uint8, uint16, openflow.Match, ...openflow.Action) openflow.Flow) []openflow.Flow {
	match := p.match()
	flows := []openflow.Flow{
		f(TableService, prioServicePort, match, openflow.Resubmit(TableAffinity), openflow.Goto(TableAffinityDNAT)),
		f(TableAffinityDNAT, prioAffinityChoose, match,
			openflow.Multipath{Links: uint16(len(backends)), DstReg: regPick}, openflow.Goto(TableAffinityLearn)),
	}
	cookie := ServiceCookie(svc)
	for i, b := range backends {
		nat := natAction(cfg, b, TableEgress)
		flows = append(flows,
			f(TableAffinityDNAT, prioAffinityBackend, p.match(regIs(regAffinity, ids[i])), nat),
			f(TableAffinityLearn, prioAffinityLearn, p.match(regIs(regPick, uint32(i))), learnAction(svc, p, ids[i], cookie), nat))
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
		groups[0].Buckets = append(groups[0].Buckets, openflow.Bucket{ID: uint32(i + 1), Actions: []openflow.Action{openflow.ToGroup(sub.ID)}})
		groups, keys = append(groups, sub), append(keys, subKey)
	}
	return groups, keys
}

// regAffinity holds, in tables 26–27, the ID of a client's remembered
// backend; regPick, in tables 27–28, the index of the backend multipath
// picked.
const (
	regAffinity uint8 = 2
	regPick     uint8 = 3
)

// regIs matches register r holding v.
func regIs(r uint8, v uint32) openflow.Reg { return openflow.Reg{N: r, Value: v, Mask: 0xffffffff} }

// hashFields are the 5-tuple fields a Service port's group hashes.
func hashFields(p serviceFamilyPort) string {
	_, tp := transport(p.sp.Protocol, p.ipv6())
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
func learnAction(svc *model.Service, p serviceFamilyPort, id uint32, cookie openflow.Cookie) openflow.LearnClient {
	sh, _ := transport(p.sp.Protocol, p.ipv6())
	return openflow.LearnClient{Table: TableAffinity, IdleTimeout: uint32(min(svc.AffinitySeconds, affinityMaxSeconds)),
		Priority: prioAffinityEntry, Cookie: cookie.Learned(), Transport: sh,
		ServiceIP: p.vip, ServicePort: uint16(p.sp.Port), LoadReg: regAffinity, LoadValue: id}
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
