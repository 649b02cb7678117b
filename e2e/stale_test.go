package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// testStaleDatapath: the matrix check forgives an allowed connection that
// keeps failing only when the bridge's tables pass it and it passes once the
// datapath's cached flows are deleted (world.staleDatapath). Here a drop is
// put straight into the datapath (dpctl/add-flow: a cached flow no OpenFlow
// rule made) and must be told apart from a drop the tables make (an OpenFlow
// rule added by hand), which must never be forgiven.
func testStaleDatapath(t *testing.T, w *world, baseline *[]string) {
	n, dst := w.nodes[0], w.pod("x/a")
	k := cellKey{tcp81, srcExt, "x/a"}
	cached := fmt.Sprintf("recirc_id(0),in_port(1),eth_type(0x0800),ipv4(src=%s,dst=%s,proto=6,frag=no),tcp(dst=%d)", extIP, dst.ip, k.p.port)
	if out, err := n.sw.Appctl("dpif/show"); err != nil || !strings.Contains(out, "br-int 65534/1: (tap)") {
		t.Fatalf("want br-int's LOCAL port at datapath port 1 (dpif/show: %v):\n%s", err, out)
	}
	// The revalidators delete a flow they did not install within ~1 s
	// (their next dump, measured), which may fall between the add and the
	// SYN: try again until the drop holds the SYN. Alone in the datapath: a
	// cached flow of earlier ext traffic would also match it, and the
	// datapath may pick either.
	blocked := false
	for try := 0; try < 5 && !blocked; try++ {
		if err := n.sw.PurgeDatapathCache(); err != nil {
			t.Fatal(err)
		}
		if _, err := n.sw.Appctl("dpctl/add-flow", cached, "drop"); err != nil {
			t.Fatal(err)
		}
		blocked = !w.observe(t, []cellKey{k}, false)[k].ok
	}
	if !blocked {
		t.Fatalf("%s %s->%s passed 5 times although the datapath held a drop for it: %s", k.p, k.from, k.to, cached)
	}
	if !w.staleDatapath(t, []cellKey{k}, false) {
		t.Errorf("a drop only in the datapath's cache was not told apart (see the log above)")
	}

	drop := fmt.Sprintf("table=40,priority=65535,tcp,nw_dst=%s,tp_dst=%d", dst.ip, k.p.port)
	if _, err := n.sw.Ofctl("add-flow", bridge, drop+",actions=drop"); err != nil {
		t.Fatal(err)
	}
	if w.staleDatapath(t, []cellKey{k}, false) {
		t.Errorf("a drop by an OpenFlow rule (%s) was taken for a stale datapath flow", drop)
	}
	w.diagnose(t, []cellKey{k}) // what a failed check logs, exercised here
	if _, err := n.sw.Ofctl("--strict", "del-flows", bridge, drop); err != nil {
		t.Fatal(err)
	}
	w.waitFlows(t, *baseline, 10*time.Second)
	w.check(t, w.xyzMatrix(true).always())
}
