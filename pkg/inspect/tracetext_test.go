package inspect

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// Text from ofproto/trace (flows' matches and actions, output ports: OVS
// may print port names, which anyone on the node can set) goes through
// printable in explain's and verify's text.
func TestTraceTextIsPrintable(t *testing.T) {
	evil := "in_port=1\nMISMATCH forged line"
	tr := &Trace{
		Steps:     []TraceStep{{Table: 30, Priority: 20000, Match: evil, Actions: []string{"output:p\x1b[31m"}}},
		Outputs:   []string{"p\x1b[31m"},
		Delivered: true,
	}
	step := tr.Steps[0]
	x := &Explanation{From: EndpointInfo{Kind: "external"}, To: EndpointInfo{Kind: "external"}, Protocol: model.TCP, Port: 80,
		Trace: &TraceInfo{Verdict: tr.Verdict(), Steps: []TracedStep{{TraceStep: step, Origin: "pipeline skeleton"}}}}
	var b bytes.Buffer
	if err := WriteExplanation(&b, x); err != nil {
		t.Fatal(err)
	}
	r := &VerifyResult{Mismatches: []VerifyCell{{From: "a/b", To: "c/d", Bridge: tr.Verdict(), Decisive: step.String()}}}
	for name, out := range map[string]string{"explain": b.String(), "verify summary": r.Summary()} {
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "MISMATCH forged") || strings.ContainsRune(line, '\x1b') {
				t.Errorf("%s output holds raw trace text: %q", name, line)
			}
		}
	}
}

// ParseTrace's errors quote the output they could not read.
func TestParseTraceErrorIsPrintable(t *testing.T) {
	_, err := ParseTrace("in_port=1", "Flow: in_port=1\n\x1b[2Jno datapath actions\n")
	if err == nil {
		t.Fatal("no error")
	}
	if strings.ContainsAny(err.Error(), "\n\x1b") {
		t.Fatalf("error holds raw trace output: %q", err)
	}
}

// unixctlCall does not read an answer of any size into memory.
func TestUnixctlAnswerIsBounded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fake.ctl")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = json.NewDecoder(c).Decode(&map[string]any{})
		// A never-ending result string.
		_, _ = c.Write([]byte(`{"id":0,"error":null,"result":"`))
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = unixctlCall(ctx, sock, "ofproto/trace", "br-int", "in_port=1")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("error %v, want one saying the answer is too large", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call ran until the test's deadline")
	}
}
