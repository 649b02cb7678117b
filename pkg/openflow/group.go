package openflow

import (
	"slices"
	"strconv"
	"strings"
)

// Group is an OpenFlow select group: the load balancer of one Service port
// (one family). Groups have no cookie in OpenFlow; ours are recognised by
// their ID (GroupIDOurs), and Cookie only says, for people and tools, which
// origin made the group (it is not installed).
type Group struct {
	ID     uint32
	Cookie Cookie
	// Fields are the header fields hashed to pick a bucket, e.g.
	// "ip_src,ip_dst,tcp_src,tcp_dst" (the 5-tuple, protocol implied).
	Fields  string
	Buckets []Bucket
}

// Bucket is one choice of a select group.
type Bucket struct {
	ID      uint32
	Actions []Action
}

// Group IDs: the top byte is 0x4e (like our cookies' magic byte), so that
// the agent recognises its groups on a bridge and leaves others alone.
const (
	GroupIDOurs     uint32 = 0x4e << 24
	GroupIDOursMask uint32 = 0xff << 24
)

// IsOurGroup reports whether a group ID is in our range.
func IsOurGroup(id uint32) bool { return id&GroupIDOursMask == GroupIDOurs }

// String renders the group exactly as "ovs-ofctl -O OpenFlow15 dump-groups"
// prints it (verified against OVS 3.1), which "ovs-ofctl bundle" also
// accepts after "group add": installed and desired groups compare as text.
func (g Group) String() string { return string(g.Append(nil)) }

// Append appends String's text: written straight into a bundle's buffer
// (a full install of 10,000 Services renders ~20,000 groups).
func (g Group) Append(b []byte) []byte {
	b = strconv.AppendUint(append(b, "group_id="...), uint64(g.ID), 10)
	b = append(b, ",type=select,selection_method=hash,fields("...)
	b = append(append(b, g.Fields...), ')')
	for _, bk := range g.Buckets {
		b = strconv.AppendUint(append(b, ",bucket=bucket_id:"...), uint64(bk.ID), 10)
		b = AppendActions(append(b, ",actions="...), bk.Actions)
	}
	return b
}

// Equal reports whether two groups install the same thing (Cookie aside).
func (g Group) Equal(o Group) bool {
	if g.ID != o.ID || g.Fields != o.Fields || len(g.Buckets) != len(o.Buckets) {
		return false
	}
	return slices.EqualFunc(g.Buckets, o.Buckets, func(a, b Bucket) bool {
		return a.ID == b.ID && slices.Equal(a.Actions, b.Actions)
	})
}

// ConntrackFlush names conntrack entries to delete from a zone: UDP
// "connections" to a Service port that were balanced to a backend that no
// longer serves it (kube-proxy deletes the same entries), so that the
// client's next datagrams are balanced again instead of following the old
// entry to nowhere.
type ConntrackFlush struct {
	Zone uint16
	// Original direction: to the Service address and port.
	Protocol    uint8 // IP protocol number (17 = UDP)
	ServiceIP   string
	ServicePort uint16
	// Reply direction: from the backend.
	BackendIP   string
	BackendPort uint16
}

// Tuples renders the original and reply tuples as "ovs-ofctl ct-flush"
// takes them (partial tuples: every entry matching the given fields).
func (f ConntrackFlush) Tuples() (orig, reply string) {
	src, dst := "ct_nw_src", "ct_nw_dst"
	if strings.Contains(f.ServiceIP, ":") {
		src, dst = "ct_ipv6_src", "ct_ipv6_dst"
	}
	proto := strconv.Itoa(int(f.Protocol))
	orig = dst + "=" + f.ServiceIP + ",ct_nw_proto=" + proto + ",ct_tp_dst=" + strconv.Itoa(int(f.ServicePort))
	reply = src + "=" + f.BackendIP + ",ct_nw_proto=" + proto + ",ct_tp_src=" + strconv.Itoa(int(f.BackendPort))
	return orig, reply
}
