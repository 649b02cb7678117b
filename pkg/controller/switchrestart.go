package controller

// SwitchRestarted tells the controller that ovs-vswitchd has restarted, so
// the bridge's flow tables are empty: the next sync is a full one, queued at
// once rather than found by the next flow count check (CheckInterval). A
// call when nothing was lost costs a full sync with nothing to change.
func (c *Controller) SwitchRestarted() {
	c.mu.Lock()
	c.needFull = true
	c.mu.Unlock()
	c.queue.Add(item{kind: "ports"})
}
