package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
	"github.com/ovs-netpol/ovs-netpol/pkg/normalize"
)

// nodeSet is what the controller knows of the cluster's Nodes (guarded by
// Controller.mu): the valid ones, those of them the compiler has (accepted:
// valid and not refused for a claim another node holds, see
// model.RefusedNodes), the invalid and refused ones (treated as absent), and
// whether the accepted set changed since NodesChanged last heard of it.
type nodeSet struct {
	valid    map[string]*model.Node
	accepted map[string]*model.Node
	invalid  map[string]bool
	refused  map[string]string // name → why
	// pending: valid changed since the claims were last resolved.
	pending bool
	// dirty: the accepted set differs from the one last reported (true at
	// start, so the first commit reports it even when empty: the agent
	// then removes host routes a previous run left).
	dirty bool
}

func newNodeSet() nodeSet {
	return nodeSet{valid: map[string]*model.Node{}, accepted: map[string]*model.Node{}, invalid: map[string]bool{},
		refused: map[string]string{}, dirty: true}
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
	c.nodes.pending = true
}

// removeNode takes a node out of the model (deleted, or invalid now).
func (c *Controller) removeNode(name string) {
	c.forgetInvalid(name)
	if _, ok := c.nodes.valid[name]; !ok {
		return
	}
	delete(c.nodes.valid, name)
	c.nodes.pending = true
}

// resolveNodes gives the compiler the valid nodes whose claims hold
// (model.RefusedNodes: a node claiming a pod CIDR or address this node or
// an older node owns could otherwise send as that node's pods from its
// tunnel endpoint, or receive their traffic). A refused node is logged and
// counted once per reason, and treated as absent like an invalid one. Run
// once per batch, after its events are applied (c.mu held).
func (c *Controller) resolveNodes() {
	if !c.nodes.pending {
		return
	}
	c.nodes.pending = false
	all := make([]*model.Node, 0, len(c.nodes.valid))
	for _, n := range c.nodes.valid {
		all = append(all, n)
	}
	refused := model.RefusedNodes(c.opts.Compiler.Node, c.opts.Compiler.NodeIPs, all)
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		if why := refused[name]; c.nodes.refused[name] != why {
			c.reject("node", name, fmt.Errorf("node %s: %s: treated as absent (no tunnel flows, no host routes)", name, why))
		}
	}
	c.nodes.refused = refused
	c.metrics.ConflictingNodes.Set(float64(len(refused)))
	for name, n := range c.nodes.valid {
		if refused[name] != "" || c.nodes.accepted[name] == n {
			continue
		}
		c.nodes.accepted[name] = n
		c.nodes.dirty = true
		c.inc.SetNode(n)
	}
	for name := range c.nodes.accepted {
		if _, ok := c.nodes.valid[name]; ok && refused[name] == "" {
			continue
		}
		delete(c.nodes.accepted, name)
		c.nodes.dirty = true
		c.inc.DeleteNode(name)
	}
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
	return a.Name == b.Name && slices.Equal(a.InternalIPs, b.InternalIPs) && slices.Equal(a.PodCIDRs, b.PodCIDRs) &&
		a.Created.Equal(b.Created)
}

// takeNodesChange returns the accepted nodes, sorted by name, if they changed
// since the last call (ok false otherwise). The nodes are copies: the
// callback may keep them.
func (c *Controller) takeNodesChange() (nodes []*model.Node, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.nodes.dirty {
		return nil, false
	}
	c.nodes.dirty = false
	nodes = make([]*model.Node, 0, len(c.nodes.accepted))
	for _, name := range slices.Sorted(maps.Keys(c.nodes.accepted)) {
		n := c.nodes.accepted[name]
		nodes = append(nodes, &model.Node{Name: n.Name, InternalIPs: slices.Clone(n.InternalIPs), PodCIDRs: slices.Clone(n.PodCIDRs), Created: n.Created})
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
