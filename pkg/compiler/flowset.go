package compiler

import (
	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

// FlowSet is the merged union of fragments' flows. Replacing one fragment
// re-merges only the keys that fragment touches.
type FlowSet struct {
	// parts holds, per flow key, each fragment's contribution.
	parts  map[openflow.Key]map[string]openflow.Flow
	merged map[openflow.Key]openflow.Flow
	// keys remembers each fragment's keys, to withdraw them on replace.
	keys map[string][]openflow.Key
}

// NewFlowSet returns an empty set.
func NewFlowSet() *FlowSet {
	return &FlowSet{
		parts:  map[openflow.Key]map[string]openflow.Flow{},
		merged: map[openflow.Key]openflow.Flow{},
		keys:   map[string][]openflow.Key{},
	}
}

// SetFragment replaces fragment id's flows and returns the keys whose merged
// flow was added, changed or removed.
func (s *FlowSet) SetFragment(id string, flows []openflow.Flow) ([]openflow.Key, error) {
	touched := map[openflow.Key]bool{}
	for _, k := range s.keys[id] {
		delete(s.parts[k], id)
		touched[k] = true
	}
	delete(s.keys, id)
	// A fragment may itself hold several flows with one key (shared
	// matches within a rule's groups): merge them first.
	own := map[openflow.Key][]openflow.Flow{}
	for _, f := range flows {
		own[f.Key()] = append(own[f.Key()], f)
	}
	var keys []openflow.Key
	for k, fs := range own {
		f, err := mergeKey(fs)
		if err != nil {
			return nil, err
		}
		if s.parts[k] == nil {
			s.parts[k] = map[string]openflow.Flow{}
		}
		s.parts[k][id] = f
		keys = append(keys, k)
		touched[k] = true
	}
	if len(keys) > 0 {
		s.keys[id] = keys
	}
	var changed []openflow.Key
	for k := range touched {
		ps := s.parts[k]
		old, had := s.merged[k]
		if len(ps) == 0 {
			delete(s.parts, k)
			if had {
				delete(s.merged, k)
				changed = append(changed, k)
			}
			continue
		}
		all := make([]openflow.Flow, 0, len(ps))
		for _, f := range ps {
			all = append(all, f)
		}
		f, err := mergeKey(all)
		if err != nil {
			return nil, err
		}
		if !had || f != old {
			s.merged[k] = f
			changed = append(changed, k)
		}
	}
	return changed, nil
}

// Flow returns the merged flow of key k.
func (s *FlowSet) Flow(k openflow.Key) (openflow.Flow, bool) {
	f, ok := s.merged[k]
	return f, ok
}

// Len is the number of merged flows.
func (s *FlowSet) Len() int { return len(s.merged) }

// Flows returns every merged flow, sorted.
func (s *FlowSet) Flows() []openflow.Flow {
	out := make([]openflow.Flow, 0, len(s.merged))
	for _, f := range s.merged {
		out = append(out, f)
	}
	openflow.Sort(out)
	return out
}
