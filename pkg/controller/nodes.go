package controller

import (
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// nodeSet is what the controller knows of the cluster's Nodes (guarded by
// Controller.mu): the valid ones as the compiler has them, the invalid ones
// (treated as absent), and whether the valid set changed since NodesChanged
// last heard of it.
type nodeSet struct {
	valid   map[string]*model.Node
	invalid map[string]bool
	// dirty: the valid set differs from the one last reported (true at
	// start, so the first commit reports it even when empty: the agent
	// then removes host routes a previous run left).
	dirty bool
}

func newNodeSet() nodeSet {
	return nodeSet{valid: map[string]*model.Node{}, invalid: map[string]bool{}, dirty: true}
}

// applyNode brings a Node into the model. One that fails validation is
// rejected (logged, counted) and removed from the model: its tunnel flows
// go and, through NodesChanged, its host routes (fail closed: no traffic is
// sent to or accepted from an endpoint or subnet we could not check).
func (c *Controller) applyNode(name string) {
	obj, err := c.nodeLister.Get(name)
	if apierrors.IsNotFound(err) {
		c.removeNode(name)
		return
	}
	if err != nil {
		c.reject("node", name, err)
		return
	}
	n, err := normalize.Node(obj)
	if err != nil {
		c.reject("node", name, err)
		c.removeNode(name)
		if !c.nodes.invalid[name] {
			c.nodes.invalid[name] = true
			c.metrics.InvalidNodes.Set(float64(len(c.nodes.invalid)))
		}
		return
	}
	c.forgetInvalid(name)
	if old, ok := c.nodes.valid[name]; ok && sameNode(old, n) {
		// A status heartbeat or a label: nothing the flows or routes use.
		return
	}
	c.nodes.valid[name] = n
	c.nodes.dirty = true
	c.inc.SetNode(n)
}

// removeNode takes a node out of the model (deleted, or invalid now).
func (c *Controller) removeNode(name string) {
	c.forgetInvalid(name)
	if _, ok := c.nodes.valid[name]; !ok {
		return
	}
	delete(c.nodes.valid, name)
	c.nodes.dirty = true
	c.inc.DeleteNode(name)
}

func (c *Controller) forgetInvalid(name string) {
	if c.nodes.invalid[name] {
		delete(c.nodes.invalid, name)
		c.metrics.InvalidNodes.Set(float64(len(c.nodes.invalid)))
	}
}

// sameNode reports whether two normalized nodes make the same flows and
// routes.
func sameNode(a, b *model.Node) bool {
	return a.Name == b.Name && slices.Equal(a.InternalIPs, b.InternalIPs) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// takeNodesChange returns the valid nodes, sorted by name, if they changed
// since the last call (ok false otherwise). The nodes are copies: the
// callback may keep them.
func (c *Controller) takeNodesChange() (nodes []*model.Node, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.nodes.dirty {
		return nil, false
	}
	c.nodes.dirty = false
	nodes = make([]*model.Node, 0, len(c.nodes.valid))
	for _, name := range slices.Sorted(maps.Keys(c.nodes.valid)) {
		n := c.nodes.valid[name]
		nodes = append(nodes, &model.Node{Name: n.Name, InternalIPs: slices.Clone(n.InternalIPs), PodCIDRs: slices.Clone(n.PodCIDRs)})
	}
	return nodes, true
}

// reportNodes calls Options.NodesChanged, outside the controller's lock,
// after a commit that changed the valid nodes (worker goroutine only, so
// calls never overlap and arrive in order).
func (c *Controller) reportNodes() {
	if c.opts.NodesChanged == nil {
		return
	}
	nodes, ok := c.takeNodesChange()
	if !ok {
		return
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	c.log.WithField("nodes", strings.Join(names, ",")).Debug("nodes changed")
	c.opts.NodesChanged(nodes)
}
