package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/pkg/ovstest"
)

// A real ovs-vswitchd killed (SIGKILL) and started again: the watcher calls
// restarted once per restart, and not for its first connection.
func TestWatchVswitchdSeesRestarts(t *testing.T) {
	sw := ovstest.Start(t)
	if err := sw.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan time.Time, 10)
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchVswitchd(ctx, filepath.Join(sw.Dir, "br0.mgmt"), func() { calls <- time.Now() }, log)
	}()

	quiet := func(what string, d time.Duration) {
		t.Helper()
		select {
		case at := <-calls:
			t.Fatalf("%s: restarted called at %s", what, at.Format("15:04:05.000"))
		case <-time.After(d):
		}
	}
	quiet("first connection", time.Second)

	for _, kill := range []bool{true, false} {
		if err := sw.StopVswitchd(kill); err != nil {
			t.Fatal(err)
		}
		if err := sw.StartVswitchd(); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		select {
		case at := <-calls:
			t.Logf("ovs-vswitchd stopped (SIGKILL %v) and started: restarted called %v after the bridge answered", kill, at.Sub(up).Round(time.Millisecond))
		case <-time.After(30 * time.Second):
			t.Fatalf("ovs-vswitchd stopped (SIGKILL %v) and started: restarted not called", kill)
		}
		// Once per restart; the connection then stays up (echo requests
		// answered).
		quiet("after the restart", 2*time.Second)
	}
	cancel()
	<-done
}

// The watcher answers OpenFlow echo requests (ovs-vswitchd's inactivity
// probe) with the same xid and payload.
func TestServeOpenFlowAnswersEcho(t *testing.T) {
	ours, theirs := net.Pipe()
	defer theirs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveOpenFlow(ctx, ours) }()

	hello := make([]byte, 8)
	if _, err := io.ReadFull(theirs, hello); err != nil {
		t.Fatal(err)
	}
	if want := ofHeader(ofVersion15, ofptHello, 8, 0); !bytes.Equal(hello, want) {
		t.Fatalf("hello % x, want % x", hello, want)
	}
	req := append(ofHeader(0x04, ofptEchoRequest, 12, 0xdeadbeef), 1, 2, 3, 4)
	if _, err := theirs.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 12)
	if _, err := io.ReadFull(theirs, reply); err != nil {
		t.Fatal(err)
	}
	if want := append(ofHeader(0x04, ofptEchoReply, 12, 0xdeadbeef), 1, 2, 3, 4); !bytes.Equal(reply, want) {
		t.Fatalf("echo reply % x, want % x", reply, want)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("serveOpenFlow returned nil after its context ended")
	}
}
