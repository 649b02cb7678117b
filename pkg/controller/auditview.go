package controller

import "net/netip"

// PodAt names the pod (namespace/name) that owns addr in the flows: of the
// active pods claiming it, the one that keeps it (see podips.go). The
// audit log names the pods of a connection with it.
func (c *Controller) PodAt(addr netip.Addr) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	claims := c.ips.claimants(addr)
	if len(claims) == 0 {
		return "", false
	}
	return claims[0].key, true
}
