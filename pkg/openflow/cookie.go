package openflow

import (
	"fmt"
	"hash/fnv"
)

// Cookie layout (64 bits), documented in flows/README.md:
//
//	bits 63..56  0x4e ("N"), marks a flow as ours
//	bits 55..48  origin kind (CookieKind)
//	bits 47..0   FNV-1a hash of the origin key (e.g. "ns/policy/ingress/0")
//
// The hash is one-way; the compiler keeps the table from cookie to origin so
// tools can print it, and `ovs-ofctl dump-flows br-int cookie=C/-1` lists
// every flow of one origin.
type Cookie uint64

// CookieKind says what made a flow.
type CookieKind uint8

const (
	// KindPipeline: the fixed pipeline skeleton (table defaults, conntrack).
	KindPipeline CookieKind = 1
	// KindPod: a local pod's port security, forwarding and isolation.
	KindPod CookieKind = 2
	// KindRule: one NetworkPolicy rule.
	KindRule CookieKind = 3
	// KindNode: the node's own traffic (gateway port, node IPs).
	KindNode CookieKind = 4
	// KindService: one Service's load balancing (its ClusterIPs' flows and
	// groups).
	KindService CookieKind = 5
	// 6..15 are left for cluster-wide (admin) policy tiers.
)

const (
	cookieMagic    = 0x4e
	cookieHashMask = 1<<48 - 1
	// OursMask selects the magic byte: cookie=0x4e00000000000000/0xff00000000000000
	// matches every flow we own.
	OursMask Cookie = 0xff << 56
	// Ours is the magic byte in place.
	Ours Cookie = cookieMagic << 56
)

func (k CookieKind) String() string {
	switch k {
	case KindPipeline:
		return "pipeline"
	case KindPod:
		return "pod"
	case KindRule:
		return "rule"
	case KindNode:
		return "node"
	case KindService:
		return "service"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// NewCookie derives the cookie of an origin.
func NewCookie(kind CookieKind, key string) Cookie {
	h := fnv.New64a()
	h.Write([]byte(key))
	return Cookie(cookieMagic)<<56 | Cookie(kind)<<48 | Cookie(h.Sum64()&cookieHashMask)
}

// Kind returns the origin kind of a cookie.
func (c Cookie) Kind() CookieKind { return CookieKind(c >> 48) }

// IsOurs reports whether the cookie carries our magic byte.
func (c Cookie) IsOurs() bool { return c&OursMask == Ours }

func (c Cookie) String() string { return string(c.Append(nil)) }

// Append appends String's text ("0x" and 16 hex digits) without fmt: flows
// and learn actions render cookies while a bundle is written.
func (c Cookie) Append(b []byte) []byte {
	b = append(b, "0x"...)
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexDigits[uint64(c)>>i&0xf])
	}
	return b
}

const hexDigits = "0123456789abcdef"

// learnedMagic marks flows that ovs-vswitchd makes itself through learn()
// actions of ours (session affinity): they are not ours to sync (the agent
// never adds or deletes them; they expire on their own), so they carry a
// magic byte outside OursMask.
const learnedMagic = 0x4c

// Learned returns the cookie that flows learned on behalf of c's origin
// carry: c with the magic byte 0x4c instead of 0x4e, so that
// "dump-flows cookie=0x4c05.../-1" lists one Service's affinity entries.
func (c Cookie) Learned() Cookie { return c&^OursMask | learnedMagic<<56 }
