package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseTable(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"", allTables, false},
		{"ingress", 40, false},
		{"classify", 0, false},
		{"affinity_learn", 28, false},
		{"40", 40, false},
		{"0", 0, false},
		{"254", 254, false},
		{"255", 0, true},
		{"256", 0, true},
		{"-1", 0, true},
		{"Ingress", 0, true},
		{"ingress\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseTable(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseTable(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("parseTable(%q): raw line break in the error %q", tt.in, err)
		}
	}
}

// TestWriteFlowsText: rows are grouped by table with a count, and text from
// the switch or the cluster (matches, actions, origins) is written
// printable: a line break in it cannot start a line of its own.
func TestWriteFlowsText(t *testing.T) {
	rows := []flowRow{
		{Table: 40, TableName: "ingress", Priority: 30000, Cookie: "0x4e03000000000001", Match: "conj_id=7", Actions: "goto_table:50",
			Packets: 4, Bytes: 296, Origin: "policy a/b ingress rule 0; conj_id 7 (this rule)"},
		{Table: 40, TableName: "ingress", Priority: 20000, Cookie: "0x4e02000000000002", Match: "ip,nw_dst=10.85.0.3", Actions: "drop",
			Origin: "pod a/server"},
		{Table: 99, Priority: 1, Cookie: "0x0000000000000001", Actions: "note:41\nfake line", Origin: "unknown\ntable 0 forged"},
	}
	var b bytes.Buffer
	if err := writeFlowsText(&b, rows); err != nil {
		t.Fatal(err)
	}
	want := `table 40 ingress (2 flows)
  priority=30000,conj_id=7 actions=goto_table:50
    packets 4, bytes 296, cookie 0x4e03000000000001: policy a/b ingress rule 0; conj_id 7 (this rule)
  priority=20000,ip,nw_dst=10.85.0.3 actions=drop
    packets 0, bytes 0, cookie 0x4e02000000000002: pod a/server
table 99 (not a table of ours) (1 flows)
  priority=1 actions="note:41\nfake line"
    packets 0, bytes 0, cookie 0x0000000000000001: "unknown\ntable 0 forged"
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeFlowsText(&b, nil); err != nil || b.String() != "no flows\n" {
		t.Errorf("no rows: %q, %v", b.String(), err)
	}
}
