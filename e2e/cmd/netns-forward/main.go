// Command netns-forward is a helper of `make demo` (scripts/demo.sh): it
// listens on a TCP address inside a network namespace and copies every
// connection made to it to an address of the namespace it was started in.
// The demo's kube-proxy runs in the node's host namespace and reaches the
// kube-apiserver, which listens on 127.0.0.1 of the machine's namespace, this
// way (TLS passes through untouched), as internal/k8stest's StartKubeProxy does
// in-process.
//
//	netns-forward NETNS LISTEN-ADDR TARGET-ADDR
//	netns-forward ovs-netpol-demo 127.0.0.1:6443 127.0.0.1:6443
//
// NETNS is a name from `ip netns add` (/run/netns/NETNS). It prints
// "listening" once the listener is open, and runs until killed.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/ovs-netpol/ovs-netpol/internal/tcpsplice"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: netns-forward NETNS LISTEN-ADDR TARGET-ADDR")
		os.Exit(2)
	}
	netnsName, listen, target := os.Args[1], os.Args[2], os.Args[3]
	netns, err := ns.GetNS(filepath.Join("/run/netns", netnsName))
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns-forward: network namespace %q: %v\n", netnsName, err)
		os.Exit(1)
	}
	// A socket belongs to the namespace it was created in, for good: the
	// listener lives in NETNS, the connections dialed below in ours.
	var l net.Listener
	err = netns.Do(func(ns.NetNS) (err error) {
		l, err = net.Listen("tcp", listen)
		return err
	})
	netns.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns-forward: listening on %s in %s: %v\n", listen, netnsName, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		in, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			os.Exit(1)
		}
		if err != nil { // e.g. out of file descriptors: try again
			fmt.Fprintln(os.Stderr, "netns-forward:", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go forward(in, target)
	}
}

func forward(in net.Conn, target string) {
	if err := tcpsplice.Forward(in, target); err != nil {
		fmt.Fprintf(os.Stderr, "netns-forward: %s: %v\n", target, err)
	}
}
