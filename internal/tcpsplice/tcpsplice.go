// Package tcpsplice copies a TCP connection to a new one to another address
// and back: what lets a process in one network namespace reach a listener
// in another (the tests' and the demo's kube-proxy reaching the
// kube-apiserver).
package tcpsplice

import (
	"io"
	"net"
	"time"
)

// Forward connects to target and copies both ways until both sides are
// done, half-closing each direction as it ends; in is closed on return.
func Forward(in net.Conn, target string) error {
	defer in.Close()
	out, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return err
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	<-done
	return nil
}
