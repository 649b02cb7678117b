package openflow

import "strings"

// SplitTopLevel splits OVS text (an action list, a match) at the commas
// outside parentheses, trimming spaces: "ct(commit,zone=1),goto_table:60"
// gives "ct(commit,zone=1)" and "goto_table:60".
func SplitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(parts, strings.TrimSpace(s[start:]))
}
