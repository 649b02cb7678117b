package openflow

import (
	"slices"
	"testing"
)

func TestSplitTopLevel(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"drop", []string{"drop"}},
		{"", []string{""}},
		{"ct(commit,zone=1,exec(set_field:0/0x2->ct_mark)),goto_table:60", []string{"ct(commit,zone=1,exec(set_field:0/0x2->ct_mark))", "goto_table:60"}},
		{"conjunction(7,1/3), conjunction(9,2/2)", []string{"conjunction(7,1/3)", "conjunction(9,2/2)"}},
		{"clone(3,4),5", []string{"clone(3,4)", "5"}},
	}
	for _, tc := range tests {
		if got := SplitTopLevel(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitTopLevel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
