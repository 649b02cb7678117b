package openflow

import "slices"

// Actions is a flow's action list as one immutable word, so a Flow stays
// small and the many flows that share a list (every flow of one
// conjunction dimension, a pod's goto) share one value. It holds either
// conjunctions only (OVS refuses to mix them with other actions) or plain
// actions. The zero value drops.
type Actions struct{ d *actionsData }

type actionsData struct {
	conj []Conjunction
	list []Action
}

// Do builds a plain action list; none drops.
func Do(a ...Action) Actions {
	if len(a) == 0 {
		return Actions{}
	}
	return Actions{&actionsData{list: slices.Clone(a)}}
}

// Conjoin builds a conjunction-only action list; none drops.
func Conjoin(cs ...Conjunction) Actions {
	if len(cs) == 0 {
		return Actions{}
	}
	return Actions{&actionsData{conj: slices.Clone(cs)}}
}

// Conjunctions returns the conjunctions (nil for plain actions). The
// slice is shared: do not modify it.
func (a Actions) Conjunctions() []Conjunction {
	if a.d == nil {
		return nil
	}
	return a.d.conj
}

// List returns the plain actions (nil for conjunctions or drop). The slice
// is shared: do not modify it.
func (a Actions) List() []Action {
	if a.d == nil {
		return nil
	}
	return a.d.list
}

// IsConjunction reports whether the actions are conjunctions.
func (a Actions) IsConjunction() bool { return a.d != nil && len(a.d.conj) > 0 }

// IsDrop reports whether the list is empty (drops).
func (a Actions) IsDrop() bool { return a.d == nil || len(a.d.conj) == 0 && len(a.d.list) == 0 }

// Equal reports whether two lists are the same actions.
func (a Actions) Equal(b Actions) bool {
	return a.d == b.d || slices.Equal(a.Conjunctions(), b.Conjunctions()) && slices.Equal(a.List(), b.List())
}

// Append appends the list's text as ovs-ofctl prints it.
func (a Actions) Append(b []byte) []byte {
	if a.IsConjunction() {
		return AppendConjunctions(b, a.d.conj)
	}
	return AppendActions(b, a.List())
}

// String renders the list as ovs-ofctl prints it.
func (a Actions) String() string { return string(a.Append(nil)) }
