package compiler

import (
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// Conjunction tiers bound the actions of one flow.
//
// A peer, target or port match shared by many rules carries one
// conjunction(ID,k/n) action per rule, and OVS refuses a flow whose actions
// pass 64 KiB (about 4,000 conjunctions: ovs-ofctl says "input too big",
// a flow mod just under it breaks the connection). Any number of legal
// policies can share one match, so the compiler spreads a table's
// conjunctions over tiers: conjunction ID lands in tier ID mod T, and all
// of its flows (every dimension and its conj_id flow) sit at priority
// PrioRuleConj - tier. A shared match becomes one flow per tier, each with
// only that tier's conjunctions. OVS's classifier looks at lower
// priorities when no conjunction completes at a higher one (verified on
// ovs-vswitchd 3.1: a packet completing a tier-1 conjunction while matching
// only one dimension of a tier-0 one gets the tier-1 conj_id flow), and
// every conjunction allows, so the verdict is the same at any tier.
//
// T is per table, a power of two, the smallest with which no flow of the
// table holds more than the limit: a function of the state alone, so full
// and incremental compiles agree. Doubling T splits every tier in two, so
// the counts only fall as T grows. With T = 1 (every table of every
// realistic cluster) the flows are exactly the untiered ones.

// DefaultMaxConjunctionsPerFlow is the most conjunction actions the
// compiler puts in one flow: half of what OVS accepts, so that the rest of
// a flow mod (match, instructions) never matters.
const DefaultMaxConjunctionsPerFlow = 2000

// MaxConjunctionTiers bounds the tiers of a table: priorities
// PrioRuleConj-MaxConjunctionTiers+1 … PrioRuleConj are theirs, and nothing
// else in the policy tables uses them. 1,024 tiers hold two million rules
// sharing one match; past that a flow stays over the limit and OVS refuses
// it (the agent then isolates that refusal to its origins).
const MaxConjunctionTiers = 1024

// tierable reports whether key k's flow is a conjunctive rule flow (a
// dimension or a conj_id flow) of a policy table.
func tierable(k openflow.Key) bool {
	return k.Priority == PrioRuleConj && (k.Table == TableEgress || k.Table == TableIngress)
}

// tiersNeeded is the number of tiers flow f needs so that no tier holds
// more than limit of its conjunctions (1 for all but huge shared matches;
// MaxConjunctionTiers at most).
func tiersNeeded(f openflow.Flow, limit int) int {
	if len(f.Actions.Conjunctions()) <= limit {
		return 1
	}
	counts := make([]int, MaxConjunctionTiers)
	for t := 2; t <= MaxConjunctionTiers; t *= 2 {
		clear(counts[:t])
		fits := true
		for _, c := range f.Actions.Conjunctions() {
			i := c.ID & uint32(t-1)
			counts[i]++
			if counts[i] > limit {
				fits = false
				break
			}
		}
		if fits {
			return t
		}
	}
	return MaxConjunctionTiers
}

// tierOf is the tier of conjunction id with t tiers.
func tierOf(id uint32, t int) uint16 { return uint16(id & uint32(t-1)) }

// splitTiers returns the installed flows of tierable key k, whose merged
// flow has match m, with t > 1 tiers, given the fragments' flows for it: a
// conj_id flow moves to its tier's priority; a dimension flow becomes one
// flow per tier its conjunctions use, each merged as mergeKey merges (its
// cookie is that of its lowest conjunction ID).
func splitTiers(k openflow.Key, m openflow.Match, shares []share, t int) ([]openflow.Flow, error) {
	if id, ok := m.ConjID(); ok {
		fs := make([]openflow.Flow, len(shares))
		for i, c := range shares {
			fs[i] = openflow.Flow{Table: k.Table, Priority: k.Priority - tierOf(id, t), Cookie: c.cookie, Match: m, Actions: c.actions}
		}
		f, err := mergeKey(fs)
		if err != nil {
			return nil, err
		}
		return []openflow.Flow{f}, nil
	}
	byTier := map[uint16][]openflow.Flow{}
	for _, c := range shares {
		if !c.actions.IsConjunction() {
			return nil, collision(k)
		}
		parts := map[uint16][]openflow.Conjunction{}
		for _, conj := range c.actions.Conjunctions() {
			tier := tierOf(conj.ID, t)
			parts[tier] = append(parts[tier], conj)
		}
		for tier, cs := range parts {
			byTier[tier] = append(byTier[tier], openflow.Flow{Table: k.Table, Priority: k.Priority - tier, Cookie: c.cookie, Match: m, Actions: openflow.Conjoin(cs...)})
		}
	}
	out := make([]openflow.Flow, 0, len(byTier))
	for _, fs := range byTier {
		f, err := mergeKey(fs)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
