package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/testproc"
)

// udpFrame builds an Ethernet/IPv4/UDP frame (UDP checksum 0: none).
func udpFrame(dstMAC, srcMAC, srcIP, dstIP string, dport int, payload string) []byte {
	eth := make([]byte, 14)
	copy(eth[0:6], mustMAC(dstMAC))
	copy(eth[6:12], mustMAC(srcMAC))
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	udpLen := 8 + len(payload)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	binary.BigEndian.PutUint16(ip[6:], 0x4000)
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], net.ParseIP(srcIP).To4())
	copy(ip[16:20], net.ParseIP(dstIP).To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 40123)
	binary.BigEndian.PutUint16(udp[2:], uint16(dport))
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	return append(append(append(eth, ip...), udp...), payload...)
}

// arpFrame builds an ARP frame (op 1 request, 2 reply).
func arpFrame(dstMAC string, op uint16, sha, spa, tha, tpa string) []byte {
	f := make([]byte, 42)
	copy(f[0:6], mustMAC(dstMAC))
	copy(f[6:12], mustMAC(sha))
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	binary.BigEndian.PutUint16(f[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], op)
	copy(f[22:28], mustMAC(sha))
	copy(f[28:32], net.ParseIP(spa).To4())
	copy(f[32:38], mustMAC(tha))
	copy(f[38:42], net.ParseIP(tpa).To4())
	return f
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// sniffer captures frames on a pod's eth0 (netpol-agnhost sniff).
type sniffer struct {
	cmd   *exec.Cmd
	lines chan string
}

func (p *pod) sniff(t *testing.T, d time.Duration, args ...string) *sniffer {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.netns, binPath("netpol-agnhost"), "sniff", "--duration", d.String()}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	s := &sniffer{cmd: cmd, lines: make(chan string, 100)}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("sniffer in %s: %q", p.key(), sc.Text())
	}
	go func() {
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	return s
}

// wait returns the frames reported (without the final count line).
func (s *sniffer) wait() []string {
	var out []string
	for l := range s.lines {
		if !strings.HasPrefix(l, "count ") {
			out = append(out, l)
		}
	}
	_ = s.cmd.Wait()
	return out
}

func (p *pod) sendFrame(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := agnhost(p.netns, "frame", "--iface", "eth0", "--count", "3", "--hex", hex.EncodeToString(frame)); err != nil {
		t.Fatal(err)
	}
}

// testSpoofing: a pod sending with another pod's source IP or MAC, or
// answering ARP for another pod's IP, is dropped by port security: the
// frames never arrive, the victim gets no replies, and the victim stays
// reachable at its own address only. Spoofer x/a, victim x/c, receiver x/b.
func testSpoofing(t *testing.T, w *world) {
	spoofer, receiver, victim := w.pod("x/a"), w.pod("x/b"), w.pod("x/c")
	n := 0
	udpCase := func(name, srcMAC, srcIP string, wantArrive bool) {
		t.Helper()
		marker := fmt.Sprintf("spoof-%s-%d", name, time.Now().UnixNano())
		atReceiver := receiver.sniff(t, 1500*time.Millisecond, "--marker", marker)
		atVictim := victim.sniff(t, 1500*time.Millisecond, "--marker", marker)
		spoofer.sendFrame(t, udpFrame(receiver.mac, srcMAC, srcIP, receiver.ip, 80, marker))
		got, gotVictim := atReceiver.wait(), atVictim.wait()
		arrived := false
		for _, l := range got {
			if strings.Contains(l, "dst="+receiver.ip) {
				arrived = true
			}
		}
		n++
		switch {
		case arrived != wantArrive:
			t.Errorf("%s: frame from %s with source %s/%s arrived at %s: %v, want %v (captured: %q)", name, spoofer.key(), srcMAC, srcIP, receiver.key(), arrived, wantArrive, got)
		case !wantArrive && len(gotVictim) > 0:
			t.Errorf("%s: the victim %s received %q", name, victim.key(), gotVictim)
		default:
			t.Logf("%s: source %s/%s from %s's port: arrived=%v (as expected)", name, srcMAC, srcIP, spoofer.key(), arrived)
		}
	}
	// Control: the same raw frame with the spoofer's own addresses arrives
	// (and x/b's echo goes back to x/a), so the method sees what is sent.
	udpCase("control-own-addresses", spoofer.mac, spoofer.ip, true)
	udpCase("source-ip-of-another-pod", spoofer.mac, victim.ip, false)
	udpCase("source-mac-of-another-pod", victim.mac, spoofer.ip, false)
	udpCase("source-ip-and-mac-of-another-pod", victim.mac, victim.ip, false)

	// ARP: a reply to x/b and a gratuitous ARP claiming x/c's IP.
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"arp-reply-for-another-pods-ip", arpFrame(receiver.mac, 2, spoofer.mac, victim.ip, receiver.mac, receiver.ip)},
		{"gratuitous-arp-for-another-pods-ip", arpFrame("ff:ff:ff:ff:ff:ff", 1, spoofer.mac, victim.ip, "00:00:00:00:00:00", victim.ip)},
	} {
		atReceiver := receiver.sniff(t, 1500*time.Millisecond, "--arp-spa", victim.ip)
		atVictim := victim.sniff(t, 1500*time.Millisecond, "--arp-spa", victim.ip)
		spoofer.sendFrame(t, c.frame)
		var bad []string
		for _, l := range append(atReceiver.wait(), atVictim.wait()...) {
			if strings.Contains(l, "sha="+spoofer.mac) {
				bad = append(bad, l)
			}
		}
		n++
		if len(bad) > 0 {
			t.Errorf("%s: spoofed ARP from %s arrived: %q", c.name, spoofer.key(), bad)
		} else {
			t.Logf("%s: dropped", c.name)
		}
	}
	if out, _ := run("ip", "-n", receiver.netns, "neigh", "show", victim.ip); strings.Contains(out, spoofer.mac) {
		t.Errorf("x/b's neighbour entry for x/c's IP points to the spoofer: %s", out)
	}
	// The victim is still reached at its address, by itself (the server
	// names itself), not through the spoofer.
	w.check(t, w.xyzMatrix(true).always())

	// The same with the kernel: the spoofer takes the victim's IP as a
	// second address and sends from it; then takes the victim's MAC.
	must(t, "ip", "-n", spoofer.netns, "addr", "add", victim.ip+"/32", "dev", "eth0")
	for _, p := range []probeT{tcp80, udp80} {
		out, err := agnhost(spoofer.netns, "probe", "--timeout", "1s", "--source", victim.ip, fmt.Sprintf("0=%s:%s:%d", p.proto, receiver.ip, p.port))
		totals.probes.Add(1)
		n++
		if err != nil || !strings.Contains(out, " fail ") {
			t.Errorf("%s from %s with source %s (ip addr add) to %s: %q %v, want fail", p, spoofer.key(), victim.ip, receiver.key(), out, err)
		}
	}
	must(t, "ip", "-n", spoofer.netns, "addr", "del", victim.ip+"/32", "dev", "eth0")
	must(t, "ip", "-n", spoofer.netns, "link", "set", "eth0", "address", victim.mac)
	for _, p := range []probeT{tcp80, udp80} {
		out, err := agnhost(spoofer.netns, "probe", "--timeout", "1s", fmt.Sprintf("0=%s:%s:%d", p.proto, receiver.ip, p.port))
		totals.probes.Add(1)
		n++
		if err != nil || !strings.Contains(out, " fail ") {
			t.Errorf("%s from %s with x/c's MAC (ip link set address) to %s: %q %v, want fail", p, spoofer.key(), receiver.key(), out, err)
		}
	}
	must(t, "ip", "-n", spoofer.netns, "link", "set", "eth0", "address", spoofer.mac)
	// Neighbours learnt the spoofer's real MAC again before: flush what the
	// receiver may have learnt during the test, then all is as before.
	_, _ = run("ip", "-n", receiver.netns, "neigh", "flush", "all")
	w.check(t, w.xyzMatrix(true).always())
	t.Logf("%d spoofing attempts, all dropped (one control passed)", n-1)
	totals.scenarios.Add(1)
}
