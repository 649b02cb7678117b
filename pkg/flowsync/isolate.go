package flowsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Refusal is one origin (a cookie: the pipeline, the node, a pod, a policy
// rule, a Service) whose mods OVS refused, with OVS's (or ovs-ofctl's) error.
type Refusal struct {
	Cookie openflow.Cookie
	Err    error
}

// ErrPipelineRefused is returned (wrapped) when the pipeline skeleton's own
// mods are refused: then nothing of the change is applied, the skeleton and
// everything else stay as they were.
var ErrPipelineRefused = errors.New("flowsync: the pipeline skeleton's mods were refused; nothing of the change was applied")

// part is one origin's mods: they go into one bundle together, never split.
type part struct {
	cookie openflow.Cookie
	mods   []Mod
	groups []GroupMod
}

// splitByOrigin groups mods by cookie (a group by its Group.Cookie; a group
// delete that does not say its origin, cookie 0, forms a part of its own),
// sorted by cookie, each part in the given order.
func splitByOrigin(mods []Mod, groups []GroupMod) []part {
	idx := map[openflow.Cookie]int{}
	var parts []part
	at := func(c openflow.Cookie) *part {
		i, ok := idx[c]
		if !ok {
			i = len(parts)
			idx[c] = i
			parts = append(parts, part{cookie: c})
		}
		return &parts[i]
	}
	for _, m := range mods {
		p := at(m.cookie())
		p.mods = append(p.mods, m)
	}
	for _, g := range groups {
		p := at(g.Group.Cookie)
		p.groups = append(p.groups, g)
	}
	slices.SortFunc(parts, func(a, b part) int {
		switch {
		case a.cookie < b.cookie:
			return -1
		case a.cookie > b.cookie:
			return 1
		}
		return 0
	})
	return parts
}

// join is the union of parts as one bundle's mods, in part order.
func join(parts []part) ([]Mod, []GroupMod) {
	var mods []Mod
	var groups []GroupMod
	for _, p := range parts {
		mods = append(mods, p.mods...)
		groups = append(groups, p.groups...)
	}
	return mods, groups
}

// bisect applies parts through apply, which commits its parts as one atomic
// bundle. known says the whole set is already known to be refused (it was
// just tried). A refused set is split in halves, down to single parts, so
// that every part OVS accepts is applied and with k refused parts among n
// it costs about 2·k·log2(n) bundles, not n. It returns the refused parts,
// in order, with the error OVS gave for each alone.
func bisect(ctx context.Context, parts []part, known bool, apply func([]part) error) []Refusal {
	if len(parts) == 0 || ctx.Err() != nil {
		return nil
	}
	if !known {
		err := apply(parts)
		if err == nil {
			return nil
		}
		if len(parts) == 1 {
			return []Refusal{{Cookie: parts[0].cookie, Err: err}}
		}
	}
	if len(parts) == 1 {
		// Known refused but never tried alone: try it for its own error.
		return bisect(ctx, parts, false, apply)
	}
	half := len(parts) / 2
	out := bisect(ctx, parts[:half], false, apply)
	return append(out, bisect(ctx, parts[half:], false, apply)...)
}

// ApplyByOrigin applies a change that OVS refused as one bundle origin by
// origin: the mods of each origin (cookie) stay together in one atomic
// bundle, groups before the flows of their origin, so every origin OVS
// accepts is installed and only the refused ones are left out. Call it only
// after ApplyBundle(mods, groups) failed: the common path stays one bundle.
//
//   - The switch must answer (one dump-aggregate): if it does not, the
//     failure is not a refusal and cause is returned.
//   - The pipeline skeleton's mods go first, alone: if they are refused,
//     nothing is applied (ErrPipelineRefused) — no other origin is installed
//     on a half-changed skeleton.
//   - Every other refused origin is removed from the bridge (fail closed):
//     its flows (cookie=C/-1, whatever they were), the flows at the keys of
//     its refused mods (a key may still hold another origin's older flow)
//     and the groups it changed. A refused rule then allows nothing, a
//     refused pod's port and addresses reach nothing (table 0's default
//     drop), a refused Service is not balanced here.
//
// It returns the refused origins; err is set when the bridge's state is
// unknown (the switch failed, or a removal failed).
func (i *Installer) ApplyByOrigin(ctx context.Context, mods []Mod, groups []GroupMod, cause error) ([]Refusal, error) {
	if ctx.Err() != nil {
		return nil, cause
	}
	if _, err := i.FlowCount(ctx); err != nil {
		return nil, fmt.Errorf("%w (and the switch does not answer: %v)", cause, err)
	}
	parts := splitByOrigin(mods, groups)
	apply := func(ps []part) error {
		m, g := join(ps)
		return i.ApplyBundle(ctx, m, g)
	}
	var refused []Refusal
	rest := parts
	known := true
	if n := slices.IndexFunc(parts, func(p part) bool { return p.cookie.Kind() == openflow.KindPipeline && p.cookie.IsOurs() }); n >= 0 {
		if err := apply(parts[n : n+1]); err != nil {
			return []Refusal{{Cookie: parts[n].cookie, Err: err}}, fmt.Errorf("%w: %v", ErrPipelineRefused, err)
		}
		rest = slices.Delete(slices.Clone(parts), n, n+1)
		known = false // the rest without the skeleton was never tried
	}
	refused = bisect(ctx, rest, known, apply)
	if ctx.Err() != nil {
		return refused, fmt.Errorf("%w (while applying origin by origin: %v)", cause, ctx.Err())
	}
	byCookie := map[openflow.Cookie]part{}
	for _, p := range parts {
		byCookie[p.cookie] = p
	}
	for _, r := range refused {
		if err := i.removeOrigin(ctx, byCookie[r.Cookie]); err != nil {
			return refused, err
		}
	}
	if i.Log != nil && len(refused) > 0 {
		i.Log.WithFields(logrus.Fields{"bridge": i.Bridge, "origins": len(parts), "refused": len(refused)}).Debug("bundle applied origin by origin")
	}
	return refused, nil
}

// removeOrigin takes a refused origin off the bridge in one bundle (see
// ApplyByOrigin). Flows without our cookie are never touched: an origin
// without one (a group delete that named none) removes nothing. If the
// keys' deletes are refused too (a key OVS cannot parse cannot be
// installed either), the cookie's flows alone are deleted.
func (i *Installer) removeOrigin(ctx context.Context, p part) error {
	if !p.cookie.IsOurs() {
		return nil
	}
	byCookie := "delete cookie=" + p.cookie.String() + "/-1\n"
	var b strings.Builder
	b.WriteString("flow " + byCookie)
	for _, m := range p.mods {
		b.Write(Mod{Op: Delete, Flow: m.Flow, Installed: m.Installed}.appendTo(nil, true))
		b.WriteByte('\n')
	}
	for _, g := range p.groups {
		b.WriteString("group delete group_id=" + strconv.FormatUint(uint64(g.Group.ID), 10) + "\n")
	}
	err := i.runText(ctx, []byte(b.String()), true)
	if err != nil {
		if err2 := i.runText(ctx, []byte(byCookie), false); err2 != nil {
			return fmt.Errorf("flowsync: removing the flows of refused origin %s: %w", p.cookie, err2)
		}
	}
	return nil
}

// runText commits a bundle file: "ovs-ofctl bundle" lines (bundleCmd) or
// "--bundle add-flows" lines.
func (i *Installer) runText(ctx context.Context, text []byte, bundleCmd bool) error {
	f, err := bundleFile(text)
	if err != nil {
		return err
	}
	defer f.Close()
	args := []string{"--no-names", "--bundle", "add-flows", i.Bridge, "-"}
	if bundleCmd {
		args = []string{"--no-names", "bundle", i.Bridge, "-"}
	}
	_, err = i.run(ctx, f, args...)
	return err
}
