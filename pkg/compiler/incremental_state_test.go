package compiler

import (
	"slices"
)

// dirtyFragments lists the fragments the next Flush computes, as their
// IDs, sorted.
func dirtyFragments(inc *Incremental) []string {
	var out []string
	for k := range inc.dirty {
		out = append(out, k.String())
	}
	for _, id := range inc.dirtyRules {
		out = append(out, ruleFrag(id).String())
	}
	slices.Sort(out)
	return out
}
