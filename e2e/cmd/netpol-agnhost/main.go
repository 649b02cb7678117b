// Command netpol-agnhost is the e2e tests' (and `make demo`'s) stand-in for
// the upstream suite's agnhost image: it runs inside a pod's network
// namespace (`ip netns exec POD netpol-agnhost ...`) and serves, probes,
// holds connections, and sends or captures raw frames.
//
//	serve  --name NS/POD [--tcp 80,81] [--udp 80,81]
//	    TCP: writes "NS/POD\n" on accept, then echoes; UDP: answers every
//	    datagram with "NS/POD " + the datagram. Listens on IPv4 and, when
//	    the namespace has IPv6, on IPv6 too. Prints "ready" once listening.
//	probe  [--timeout 1s] [--source IP] ID=PROTO:IP:PORT[:SPORT]...
//	    (an IPv6 address in brackets: tcp:[fd00::1]:80; the connection is
//	    of the address's family)
//	    tries every target at once (a new connection each) and prints
//	    "ID ok NS/POD" or "ID fail REASON" per target. TCP: connect, read the
//	    banner, echo a line; UDP: send (again every 250 ms) until an answer.
//	    SPORT fixes the source port: a UDP 5-tuple that conntrack still
//	    holds from an earlier allowed probe is an established "connection",
//	    which a new deny does not stop; the tests give every UDP probe a
//	    fresh port instead of the kernel's random one.
//	hold   [--timeout 1s] tcp:IP:PORT (or tcp:[IPv6]:PORT)
//	    one long-lived TCP connection: prints "connected NS/POD", then echoes
//	    every stdin line through it, printing "ok" or "fail REASON" per line.
//	loop   [--interval 20ms] [--timeout 300ms] [--sport-base N] --duration 10s PROTO:IP:PORT
//	    starts a new connection every interval; prints "START_UNIXNANO ok|fail"
//	    per attempt (in completion order). With --sport-base, attempt i uses
//	    source port N+i (fresh UDP 5-tuples, see probe).
//	frame  --iface eth0 --hex FRAME [--count 3]
//	    sends a raw Ethernet frame (AF_PACKET) COUNT times, 50 ms apart.
//	sniff  --iface eth0 --duration 2s [--marker TEXT] [--arp-spa IP]
//	    prints "ready", then every received frame containing TEXT, or every
//	    ARP with sender IP --arp-spa, as "ARP op=N spa sha tpa" / "IP src
//	    dst"; finally "count N".
//	matrix --source NAME=NETNS[@BINDIP]... --target NAME=IP... --probe tcp/80...
//	    (for the demo) probes from every source's namespace and prints one
//	    table per probe: rows from, columns to, "." connected, "X" blocked.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netpol-agnhost serve|probe|hold|loop|frame|sniff|matrix ...")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		err = serve(args)
	case "probe":
		err = probe(args)
	case "hold":
		err = hold(args)
	case "loop":
		err = loop(args)
	case "frame":
		err = sendFrame(args)
	case "sniff":
		err = sniff(args)
	case "matrix":
		err = matrix(args)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netpol-agnhost:", err)
		os.Exit(1)
	}
}

func ports(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ---- serve

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", "", "identity reported to clients (NS/POD)")
	tcpPorts := fs.String("tcp", "80,81", "TCP ports")
	udpPorts := fs.String("udp", "80,81", "UDP ports")
	_ = fs.Parse(args)
	if *name == "" {
		return errors.New("serve: --name is required")
	}
	tps, err := ports(*tcpPorts)
	if err != nil {
		return err
	}
	ups, err := ports(*udpPorts)
	if err != nil {
		return err
	}
	banner := []byte(*name + "\n")
	// IPv4 always; IPv6 as well where the namespace has it (an IPv6-only
	// socket, so that the IPv4 one keeps its port).
	var lns []net.Listener
	var pcs []net.PacketConn
	for _, p := range tps {
		ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", p))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		if ln6, err := net.Listen("tcp6", fmt.Sprintf("[::]:%d", p)); err == nil {
			lns = append(lns, ln6)
		}
	}
	for _, p := range ups {
		pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", p))
		if err != nil {
			return err
		}
		pcs = append(pcs, pc)
		if pc6, err := net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", p)); err == nil {
			pcs = append(pcs, pc6)
		}
	}
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					continue
				}
				go func() {
					defer c.Close()
					if _, err := c.Write(banner); err != nil {
						return
					}
					_, _ = io.Copy(c, c)
				}()
			}
		}()
	}
	for _, pc := range pcs {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, addr, err := pc.ReadFrom(buf)
				if err != nil {
					continue
				}
				reply := append([]byte(*name+" "), buf[:n]...)
				_, _ = pc.WriteTo(reply, addr)
			}
		}()
	}
	fmt.Println("ready")
	select {}
}

// ---- probe

type target struct {
	id, proto, ip string
	port, sport   int
}

func parseTarget(s string) (target, error) {
	t := target{}
	id, rest, ok := strings.Cut(s, "=")
	if !ok {
		rest, id = s, s
	}
	t.id = id
	var f []string
	if proto, after, ok := strings.Cut(rest, ":["); ok {
		// PROTO:[IPv6]:PORT[:SPORT]
		ip, ports, ok := strings.Cut(after, "]:")
		if !ok {
			return t, fmt.Errorf("bad target %q (want ID=PROTO:[IPv6]:PORT[:SPORT])", s)
		}
		f = append([]string{proto, ip}, strings.Split(ports, ":")...)
	} else {
		f = strings.Split(rest, ":")
	}
	if len(f) == 4 {
		sp, err := strconv.Atoi(f[3])
		if err != nil {
			return t, fmt.Errorf("bad source port in %q", s)
		}
		t.sport, f = sp, f[:3]
	}
	if len(f) != 3 {
		return t, fmt.Errorf("bad target %q (want ID=PROTO:IP:PORT[:SPORT])", s)
	}
	t.proto, t.ip = strings.ToLower(f[0]), f[1]
	if t.ip == "" || net.ParseIP(t.ip) == nil && strings.Contains(t.ip, ":") {
		return t, fmt.Errorf("bad address in %q", s)
	}
	p, err := strconv.Atoi(f[2])
	if err != nil {
		return t, fmt.Errorf("bad port in %q", s)
	}
	t.port = p
	if t.proto != "tcp" && t.proto != "udp" {
		return t, fmt.Errorf("protocol %q: only tcp and udp (this kernel has no SCTP sockets)", t.proto)
	}
	return t, nil
}

func (t target) addr() string { return net.JoinHostPort(t.ip, strconv.Itoa(t.port)) }

// network is "tcp4"/"udp4", or "tcp6"/"udp6" for an IPv6 target.
func (t target) network() string {
	if ip := net.ParseIP(t.ip); ip != nil && ip.To4() == nil {
		return t.proto + "6"
	}
	return t.proto + "4"
}

// try makes one new connection to t and returns the peer's identity.
func try(t target, source string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	switch t.proto {
	case "tcp":
		d := net.Dialer{Deadline: deadline}
		if source != "" || t.sport != 0 {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source), Port: t.sport}
		}
		c, err := d.Dial(t.network(), t.addr())
		if err != nil {
			return "", shortErr(err)
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		r := bufio.NewReader(c)
		banner, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("no banner: %w", shortErr(err))
		}
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return "", shortErr(err)
		}
		echo, err := r.ReadString('\n')
		if err != nil || echo != "ping\n" {
			return "", fmt.Errorf("no echo: %v", shortErr(err))
		}
		return strings.TrimSpace(banner), nil
	default:
		var laddr *net.UDPAddr
		if source != "" || t.sport != 0 {
			laddr = &net.UDPAddr{IP: net.ParseIP(source), Port: t.sport}
		}
		raddr, err := net.ResolveUDPAddr(t.network(), t.addr())
		if err != nil {
			return "", err
		}
		c, err := net.DialUDP(t.network(), laddr, raddr)
		if err != nil {
			return "", shortErr(err)
		}
		defer c.Close()
		msg := fmt.Sprintf("probe-%d", time.Now().UnixNano())
		buf := make([]byte, 2048)
		for {
			if _, err := c.Write([]byte(msg)); err != nil {
				// ICMP unreachable from an earlier try: keep trying until the deadline.
				if time.Now().After(deadline) {
					return "", shortErr(err)
				}
			}
			next := time.Now().Add(250 * time.Millisecond)
			if next.After(deadline) {
				next = deadline
			}
			_ = c.SetReadDeadline(next)
			n, err := c.Read(buf)
			if err == nil {
				who, rest, ok := strings.Cut(string(buf[:n]), " ")
				if ok && rest == msg {
					return who, nil
				}
				continue
			}
			if time.Now().After(deadline) || !isTimeout(err) && !errors.Is(err, syscall.ECONNREFUSED) {
				return "", shortErr(err)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func shortErr(err error) error {
	if err == nil {
		return nil
	}
	if isTimeout(err) {
		return errors.New("timeout")
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	timeout := fs.Duration("timeout", time.Second, "time limit of each try")
	source := fs.String("source", "", "local address to send from")
	_ = fs.Parse(args)
	var targets []target
	for _, a := range fs.Args() {
		t, err := parseTarget(a)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}
	results := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who, err := try(t, *source, *timeout)
			if err != nil {
				results[i] = fmt.Sprintf("%s fail %s", t.id, strings.ReplaceAll(err.Error(), " ", "_"))
			} else {
				results[i] = fmt.Sprintf("%s ok %s", t.id, who)
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		fmt.Println(r)
	}
	return nil
}

// ---- hold

func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	timeout := fs.Duration("timeout", time.Second, "time limit of the connect and of each echo")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("hold: one tcp:IP:PORT target")
	}
	t, err := parseTarget(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := net.DialTimeout(t.network(), t.addr(), *timeout)
	if err != nil {
		fmt.Printf("fail %v\n", shortErr(err))
		return nil
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(*timeout))
	banner, err := r.ReadString('\n')
	if err != nil {
		fmt.Printf("fail no banner: %v\n", shortErr(err))
		return nil
	}
	fmt.Printf("connected %s\n", strings.TrimSpace(banner))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := in.Text() + "\n"
		_ = c.SetDeadline(time.Now().Add(*timeout))
		if _, err := c.Write([]byte(line)); err != nil {
			fmt.Printf("fail %v\n", shortErr(err))
			continue
		}
		echo, err := r.ReadString('\n')
		if err != nil || echo != line {
			fmt.Printf("fail %v\n", shortErr(err))
			continue
		}
		fmt.Println("ok")
	}
	return nil
}

// ---- loop

func loop(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	interval := fs.Duration("interval", 20*time.Millisecond, "time between new connections")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "time limit of each connection")
	duration := fs.Duration("duration", 10*time.Second, "how long to keep starting connections")
	sportBase := fs.Int("sport-base", 0, "source port of the first attempt (then +1 each; 0: the kernel's)")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("loop: one target")
	}
	t, err := parseTarget(fs.Arg(0))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	end := time.Now().Add(*duration)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	fmt.Println("started")
	for i, now := 0, time.Now(); now.Before(end); i, now = i+1, <-tick.C {
		wg.Add(1)
		tt := t
		if *sportBase != 0 {
			tt.sport = *sportBase + i
		}
		go func(start time.Time) {
			defer wg.Done()
			_, err := try(tt, "", *timeout)
			res := "ok"
			if err != nil {
				res = "fail"
			}
			mu.Lock()
			fmt.Fprintf(out, "%d %s\n", start.UnixNano(), res)
			out.Flush()
			mu.Unlock()
		}(now)
	}
	wg.Wait()
	return nil
}

// ---- raw frames

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func packetSocket(iface string) (int, int, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return -1, 0, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return -1, 0, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	sa := &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, 0, fmt.Errorf("bind to %s: %w", iface, err)
	}
	return fd, ifi.Index, nil
}

func sendFrame(args []string) error {
	fs := flag.NewFlagSet("frame", flag.ExitOnError)
	iface := fs.String("iface", "eth0", "interface")
	hexFrame := fs.String("hex", "", "the Ethernet frame, hex")
	count := fs.Int("count", 3, "how many times")
	_ = fs.Parse(args)
	frame, err := hex.DecodeString(*hexFrame)
	if err != nil || len(frame) < 14 {
		return fmt.Errorf("frame: bad --hex: %v", err)
	}
	fd, idx, err := packetSocket(*iface)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrLinklayer{Ifindex: idx, Halen: 6}
	copy(to.Addr[:], frame[:6])
	for i := range *count {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if err := syscall.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
	}
	fmt.Printf("sent %d\n", *count)
	return nil
}

func sniff(args []string) error {
	fs := flag.NewFlagSet("sniff", flag.ExitOnError)
	iface := fs.String("iface", "eth0", "interface")
	duration := fs.Duration("duration", 2*time.Second, "how long to listen")
	marker := fs.String("marker", "", "report frames containing this text")
	arpSPA := fs.String("arp-spa", "", "report ARP frames with this sender IP")
	_ = fs.Parse(args)
	fd, _, err := packetSocket(*iface)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	var spa net.IP
	if *arpSPA != "" {
		spa = net.ParseIP(*arpSPA).To4()
	}
	fmt.Println("ready")
	end := time.Now().Add(*duration)
	buf := make([]byte, 65536)
	n := 0
	for time.Now().Before(end) {
		l, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout
		}
		f := buf[:l]
		if l < 14 {
			continue
		}
		et := binary.BigEndian.Uint16(f[12:14])
		switch {
		case et == 0x0806 && l >= 42 && spa != nil && net.IP(f[28:32]).Equal(spa):
			fmt.Printf("ARP op=%d spa=%s sha=%s tpa=%s\n", binary.BigEndian.Uint16(f[20:22]),
				net.IP(f[28:32]), net.HardwareAddr(f[22:28]), net.IP(f[38:42]))
			n++
		case *marker != "" && strings.Contains(string(f), *marker):
			if et == 0x0800 && l >= 34 {
				fmt.Printf("IP src=%s dst=%s ethsrc=%s\n", net.IP(f[26:30]), net.IP(f[30:34]), net.HardwareAddr(f[6:12]))
			} else {
				fmt.Printf("frame ethertype=%#04x\n", et)
			}
			n++
		}
	}
	fmt.Printf("count %d\n", n)
	return nil
}

// ---- matrix (demo)

func matrix(args []string) error {
	var sources, targets, probes multiFlag
	fs := flag.NewFlagSet("matrix", flag.ExitOnError)
	fs.Var(&sources, "source", "NAME=NETNS[@BINDIP] (repeatable)")
	fs.Var(&targets, "target", "NAME=IP (repeatable)")
	fs.Var(&probes, "probe", "PROTO/PORT (repeatable)")
	timeout := fs.Duration("timeout", time.Second, "time limit of each try")
	_ = fs.Parse(args)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type src struct{ name, netns, bind string }
	var srcs []src
	for _, s := range sources {
		name, rest, _ := strings.Cut(s, "=")
		netns, bind, _ := strings.Cut(rest, "@")
		srcs = append(srcs, src{name, netns, bind})
	}
	type dst struct{ name, ip string }
	var dsts []dst
	for _, s := range targets {
		name, ip, _ := strings.Cut(s, "=")
		dsts = append(dsts, dst{name, ip})
	}
	res := map[string]string{} // "src|dst|probe" -> "ok who" / "fail why"
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(srcs))
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := []string{"netns", "exec", s.netns, self, "probe", "--timeout", timeout.String()}
			if s.bind != "" {
				a = append(a, "--source", s.bind)
			}
			for i, d := range dsts {
				for j, p := range probes {
					proto, port, _ := strings.Cut(p, "/")
					a = append(a, fmt.Sprintf("%d.%d=%s:%s:%s", i, j, proto, d.ip, port))
				}
			}
			out, err := exec.CommandContext(context.Background(), "ip", a...).Output()
			if err != nil {
				errs <- fmt.Errorf("probing from %s (netns %s): %v", s.name, s.netns, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				if len(f) < 2 {
					continue
				}
				var i, j int
				fmt.Sscanf(f[0], "%d.%d", &i, &j)
				res[s.name+"|"+dsts[i].name+"|"+probes[j]] = strings.Join(f[1:], " ")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	w := len("from \\ to")
	for _, s := range srcs {
		w = max(w, len(s.name))
	}
	for _, p := range probes {
		fmt.Printf("%s:\n%-*s", strings.ToUpper(p), w+2, "from \\ to")
		for _, d := range dsts {
			fmt.Printf("  %s", d.name)
		}
		fmt.Println()
		for _, s := range srcs {
			fmt.Printf("%-*s", w+2, s.name)
			for _, d := range dsts {
				c := "X"
				if strings.HasPrefix(res[s.name+"|"+d.name+"|"+p], "ok") {
					c = "."
				}
				fmt.Printf("  %-*s", len(d.name), c)
			}
			fmt.Println()
		}
	}
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
