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

	"github.com/ovs-netpol/ovs-netpol/internal/ofconn"
	"github.com/ovs-netpol/ovs-netpol/internal/ovstest"
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
	go func() { done <- serveOpenFlow(ctx, ours, nil) }()

	hello := make([]byte, 8)
	if _, err := io.ReadFull(theirs, hello); err != nil {
		t.Fatal(err)
	}
	if want := ofconn.Header(ofconn.Version15, ofconn.TypeHello, 8, 0); !bytes.Equal(hello, want) {
		t.Fatalf("hello % x, want % x", hello, want)
	}
	req := append(ofconn.Header(0x04, ofconn.TypeEchoRequest, 12, 0xdeadbeef), 1, 2, 3, 4)
	if _, err := theirs.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 12)
	if _, err := io.ReadFull(theirs, reply); err != nil {
		t.Fatal(err)
	}
	if want := append(ofconn.Header(0x04, ofconn.TypeEchoReply, 12, 0xdeadbeef), 1, 2, 3, 4); !bytes.Equal(reply, want) {
		t.Fatalf("echo reply % x, want % x", reply, want)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("serveOpenFlow returned nil after its context ended")
	}
}

// A scripted stand-in for ovs-vswitchd's management socket: the watcher
// resyncs once per ovs-vswitchd that says hello after one went away (or was
// not there at the start), and never for a connection closed before its
// hello (the listening socket of an ovs-vswitchd that is exiting).
func TestWatchVswitchdCountsHellos(t *testing.T) {
	const (
		hello  = "hello"  // accept, exchange hellos and one echo, then close
		mute   = "mute"   // accept and close without a hello
		absent = "absent" // no socket for a while
	)
	cases := []struct {
		name  string
		steps []string
		want  int
	}{
		{name: "first hello", steps: []string{hello}, want: 0},
		{name: "restart", steps: []string{hello, hello}, want: 1},
		{name: "two restarts", steps: []string{hello, hello, hello}, want: 2},
		{name: "exiting switch accepts, then the new one", steps: []string{hello, mute, mute, hello}, want: 1},
		{name: "accepted without hello at the start", steps: []string{mute, hello}, want: 1},
		{name: "absent at the start", steps: []string{absent, hello}, want: 1},
		{name: "absent a while", steps: []string{hello, absent, hello}, want: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "br0.mgmt")
			listen := func() net.Listener {
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			var l net.Listener
			if c.steps[0] != absent {
				l = listen()
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := make(chan struct{}, 10)
			log := logrus.New()
			log.SetOutput(io.Discard)
			done := make(chan struct{})
			go func() {
				defer close(done)
				watchVswitchd(ctx, path, func() { calls <- struct{}{} }, log)
			}()
			for i, step := range c.steps {
				switch step {
				case absent:
					if l != nil {
						l.Close()
					}
					time.Sleep(200 * time.Millisecond) // several dials fail meanwhile
					l = listen()
				case mute:
					conn, err := l.Accept()
					if err != nil {
						t.Fatal(err)
					}
					conn.Close()
				case hello:
					conn, err := l.Accept()
					if err != nil {
						t.Fatal(err)
					}
					greetAndEcho(t, conn, uint32(i))
					conn.Close()
				}
			}
			// The last step was a hello answered with an echo reply: any
			// call it caused has been made.
			cancel()
			<-done
			l.Close()
			if got := len(calls); got != c.want {
				t.Fatalf("steps %v: restarted called %d times, want %d", c.steps, got, c.want)
			}
		})
	}
}

// greetAndEcho plays ovs-vswitchd's side of a connection: the watcher's
// hello, ours, and an echo request it must answer.
func greetAndEcho(t *testing.T, conn net.Conn, xid uint32) {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 8)
	if _, err := io.ReadFull(conn, msg); err != nil || msg[1] != ofconn.TypeHello {
		t.Fatalf("the watcher's hello: % x, %v", msg, err)
	}
	if _, err := conn.Write(append(ofconn.Header(ofconn.Version15, ofconn.TypeHello, 8, 1), ofconn.Header(ofconn.Version15, ofconn.TypeEchoRequest, 8, xid)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, msg); err != nil || !bytes.Equal(msg, ofconn.Header(ofconn.Version15, ofconn.TypeEchoReply, 8, xid)) {
		t.Fatalf("echo reply: % x, %v", msg, err)
	}
}
