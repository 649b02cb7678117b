package inspect

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ovs-netpol/ovs-netpol/pkg/openflow"
)

func TestParseLiveFlow(t *testing.T) {
	tests := []struct {
		name string
		line string
		want LiveFlow
	}{
		{
			name: "conj_id flow with statistics",
			line: " cookie=0x4e03a1b2c3d4e5f6, duration=12.345s, table=40, n_packets=7, n_bytes=518, idle_age=3, priority=30000,conj_id=1234,ip actions=goto_table:50",
			want: LiveFlow{Table: 40, Priority: 30000, Cookie: 0x4e03a1b2c3d4e5f6, Match: "conj_id=1234,ip", Actions: "goto_table:50",
				Packets: 7, Bytes: 518, ConjID: 1234},
		},
		{
			name: "constituent flow of two conjunctions",
			line: " cookie=0x4e03000000000001, duration=1.5s, table=40, n_packets=0, n_bytes=0, idle_age=1, priority=30000,ip,nw_dst=10.85.0.5 actions=conjunction(1234,1/3),conjunction(99,1/2)",
			want: LiveFlow{Table: 40, Priority: 30000, Cookie: 0x4e03000000000001, Match: "ip,nw_dst=10.85.0.5",
				Actions: "conjunction(1234,1/3),conjunction(99,1/2)", Conjunctions: []uint32{1234, 99}},
		},
		{
			name: "default priority is not printed",
			line: " cookie=0x0, duration=0.1s, table=0, n_packets=1, n_bytes=60, idle_age=0, actions=NORMAL",
			want: LiveFlow{Table: 0, Priority: 32768, Packets: 1, Bytes: 60, Actions: "NORMAL"},
		},
		{
			name: "without statistics",
			line: " cookie=0x4e01000000000002, table=10, priority=0 actions=goto_table:20",
			want: LiveFlow{Table: 10, Priority: 0, Cookie: 0x4e01000000000002, Actions: "goto_table:20"},
		},
		{
			name: "learned flow keeps its timeouts in the match",
			line: " cookie=0x4c05000000000003, duration=2s, table=26, n_packets=2, n_bytes=148, idle_timeout=10800, hard_age=1, idle_age=1, priority=100,tcp,nw_src=10.85.0.7 actions=load:0xa550007->NXM_NX_REG1[]",
			want: LiveFlow{Table: 26, Priority: 100, Cookie: 0x4c05000000000003, Match: "idle_timeout=10800,tcp,nw_src=10.85.0.7",
				Actions: "load:0xa550007->NXM_NX_REG1[]", Packets: 2, Bytes: 148},
		},
		{
			name: "a word containing conjunction( is not an action",
			line: " cookie=0x1, table=0, priority=1 actions=note:conjunction(5,1/2),drop",
			want: LiveFlow{Priority: 1, Cookie: 1, Actions: "note:conjunction(5,1/2),drop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLiveFlow(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseLiveFlowErrors(t *testing.T) {
	tests := []struct {
		name, line, wantErr string
	}{
		{"no actions", " cookie=0x1, table=0, priority=1", "no actions"},
		{"table out of range", " cookie=0x1, table=300, priority=1 actions=drop", "bad table"},
		{"counter not a number", " cookie=0x1, table=0, n_packets=x, priority=1 actions=drop", "bad n_packets"},
		{"conjunction without clause", " table=40, priority=1 actions=conjunction(7)", "not (ID,k/n)"},
		{"unterminated conjunction", " table=40, priority=1 actions=conjunction(7,1/2", "unterminated"},
		{"control character is quoted", " cookie=0x1, table=\x1b[31m, priority=1 actions=drop", `table=\x1b[31m,`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLiveFlow(tt.line)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.ContainsAny(err.Error(), "\x1b\n") {
				t.Errorf("error carries raw control characters: %q", err)
			}
		})
	}
}

func TestParseDumpSkipsHeaders(t *testing.T) {
	out := "OFPST_FLOW reply (OF1.5) (xid=0x2):\n" +
		" cookie=0x4e01000000000001, duration=1s, table=0, n_packets=3, n_bytes=180, priority=0 actions=drop\n" +
		" cookie=0x4e01000000000001, duration=1s, table=10, n_packets=0, n_bytes=0, priority=0 actions=goto_table:20\n"
	flows, err := ParseDump([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 2 || flows[0].Packets != 3 || flows[1].Table != 10 {
		t.Fatalf("got %+v", flows)
	}
	if got := flows[1].String(); got != "table=10,priority=0,cookie="+openflow.Cookie(0x4e01000000000001).String()+" actions=goto_table:20" {
		t.Errorf("String: %s", got)
	}
}
