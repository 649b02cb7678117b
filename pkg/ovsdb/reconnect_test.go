package ovsdb

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
)

// The server itself drops every client connection (ovsdb-server/reconnect):
// the client notices, dials again, monitors again, and keeps working.
func TestReconnectAfterServerDrop(t *testing.T) {
	s, c := newBridge(t)
	ctx := ctxT(t, 60*time.Second)
	addVeth(t, s, "npa")
	if _, err := c.AddPodPort(ctx, br, "npa", map[string]string{KeyPodNamespace: "x", KeyPodName: "a"}); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe()
	drain(sub)
	old := c.current()
	run(t, "ovs-appctl", "-t", filepath.Join(s.Dir, "ovsdb.ctl"), "ovsdb-server/reconnect")
	waitNewConn(t, c, old, sub)
	if got := c.PodPorts(br); len(got) != 1 || got[0].Interface != "npa" {
		t.Errorf("PodPorts after reconnect: %+v", got)
	}
	// Reads and writes on the new connection.
	addVeth(t, s, "npb")
	if _, err := c.AddPodPort(ctx, br, "npb", map[string]string{KeyPodNamespace: "x", KeyPodName: "b"}); err != nil {
		t.Fatal(err)
	}
	vsctl(t, s, "del-port", br, "npa")
	eventually(t, "external delete seen", func() error {
		if got := c.PodPorts(br); len(got) != 1 || got[0].Interface != "npb" {
			return fmt.Errorf("PodPorts = %+v", got)
		}
		return nil
	})
}

// While the server is unreachable, reads answer from the last cache and
// writes fail; changes made meanwhile show up after the reconnect.
func TestReconnectAfterOutage(t *testing.T) {
	s := ovstest.Start(t)
	p := newProxy(t, s)
	c := connect(t, p.endpoint())
	ctx := ctxT(t, 60*time.Second)
	if err := c.EnsureBridge(ctx, br, "netdev", nil); err != nil {
		t.Fatal(err)
	}
	addVeth(t, s, "npa")
	addVeth(t, s, "npb")
	ofA, err := c.AddPodPort(ctx, br, "npa", map[string]string{KeyPodNamespace: "x", KeyPodName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe()
	drain(sub)
	old := c.current()

	p.down()
	// Meanwhile someone else changes the database directly.
	vsctl(t, s, "del-port", br, "npa", "--", "add-port", br, "npb", "--", "set", "Interface", "npb",
		`external_ids:"ovs-netpol.io/pod-namespace"=y`, `external_ids:"ovs-netpol.io/pod-name"=b`)
	time.Sleep(300 * time.Millisecond) // several reconnect attempts fail
	if got := c.PodPorts(br); len(got) != 1 || got[0].Interface != "npa" || got[0].OFPort != ofA {
		t.Errorf("PodPorts during the outage (want the last known state): %+v", got)
	}
	addVeth(t, s, "npc")
	if _, err := c.AddPodPort(ctxT(t, 2*time.Second), br, "npc", nil); err == nil {
		t.Error("AddPodPort succeeded during the outage")
	}

	p.up()
	waitNewConn(t, c, old, sub)
	eventually(t, "state after the outage", func() error {
		if got := c.PodPorts(br); len(got) != 1 || got[0].Interface != "npb" || got[0].Namespace != "y" {
			return fmt.Errorf("PodPorts = %+v", got)
		}
		return nil
	})
	if _, err := c.AddPodPort(ctx, br, "npc", nil); err != nil {
		t.Errorf("AddPodPort after the outage: %v", err)
	}
}

// A server that stops answering without closing the connection is detected
// by the echo probe.
func TestReconnectAfterHang(t *testing.T) {
	saved := [2]time.Duration{probeInterval, probeTimeout}
	probeInterval, probeTimeout = 100*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { probeInterval, probeTimeout = saved[0], saved[1] })

	s := ovstest.Start(t)
	p := newProxy(t, s)
	c := connect(t, p.endpoint())
	sub := c.Subscribe()
	drain(sub)
	old := c.current()
	p.freeze() // existing connections go silent; new ones work
	waitNewConn(t, c, old, sub)
	if err := c.EnsureBridge(ctxT(t, 10*time.Second), br, "netdev", nil); err != nil {
		t.Fatalf("EnsureBridge after the hang: %v", err)
	}
	if got := vsctl(t, s, "list-br"); got != br {
		t.Errorf("list-br: %q", got)
	}
}

// waitNewConn waits until the client has replaced connection old, and for
// the subscription's signal that follows the swap. (Signals before it may
// come from late events of the old connection, so they prove nothing.)
func waitNewConn(t *testing.T, c *Client, old *conn, sub <-chan struct{}) {
	t.Helper()
	eventually(t, "a new connection", func() error {
		if c.current() == old {
			return errors.New("still the old connection")
		}
		return nil
	})
	waitSignal(t, sub, "reconnect")
}

// proxy forwards a unix socket to the switch's db.sock and can cut all
// connections (down/up) or silence the existing ones (freeze).
type proxy struct {
	t      *testing.T
	path   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []*proxyConn
	wg    sync.WaitGroup
}

type proxyConn struct {
	a, b   net.Conn
	frozen atomic.Bool
}

func newProxy(t *testing.T, s *ovstest.Switch) *proxy {
	dir, err := os.MkdirTemp("/tmp", "ovsp")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, path: filepath.Join(dir, "proxy.sock"), target: strings.TrimPrefix(s.DBSock(), "unix:")}
	p.up()
	t.Cleanup(func() {
		p.down()
		p.wg.Wait()
		os.RemoveAll(dir)
	})
	return p
}

func (p *proxy) endpoint() string { return "unix:" + p.path }

func (p *proxy) up() {
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("unix", p.target)
			if err != nil {
				a.Close()
				continue
			}
			pc := &proxyConn{a: a, b: b}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.copy(pc, a, b)
			go p.copy(pc, b, a)
		}
	}()
}

func (p *proxy) copy(pc *proxyConn, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !pc.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("proxy: %v", err)
			}
			break
		}
	}
	pc.a.Close()
	pc.b.Close()
}

// down closes the listener (new dials fail: the socket file is gone) and
// every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, pc := range p.conns {
		pc.a.Close()
		pc.b.Close()
	}
	p.conns = nil
}

// freeze drops all traffic of the existing connections from now on,
// keeping them open.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.conns {
		pc.frozen.Store(true)
	}
}
