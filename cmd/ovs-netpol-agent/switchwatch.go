package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"
)

// OpenFlow message types the watcher handles; they are the same in every
// OpenFlow version.
const (
	ofptHello       = 0
	ofptEchoRequest = 2
	ofptEchoReply   = 3
	// ofVersion15 is the version of our hello: the agent's bridges speak
	// OpenFlow 1.0 to 1.5 (pkg/ovsdb EnsureBridge), so it is accepted.
	ofVersion15 = 0x06
)

// watchVswitchd holds an OpenFlow connection to the bridge's management
// socket (RUNDIR/BRIDGE.mgmt). ovs-vswitchd closes it when it exits, however
// it exits (kill -9 included), and a connection made again afterwards is to
// a new ovs-vswitchd, whose flow tables are empty: restarted is then called
// at once, instead of the loss being found by the periodic flow count
// check. A connection lost for another reason (the bridge deleted and
// added again, which also empties it) ends the same way; a needless call
// costs a full sync that finds nothing to change. It returns when ctx ends.
func watchVswitchd(ctx context.Context, path string, restarted func(), log logrus.FieldLogger) {
	const retry = 50 * time.Millisecond
	connectedBefore := false
	for ctx.Err() == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			continue
		}
		if connectedBefore {
			log.Warn("ovs-vswitchd is back (its flow tables are empty): full resync")
			restarted()
		}
		connectedBefore = true
		err = serveOpenFlow(ctx, conn)
		if ctx.Err() == nil {
			log.WithError(err).Warn("OpenFlow connection to ovs-vswitchd lost (restart?); reconnecting")
		}
	}
}

// serveOpenFlow says hello and answers echo requests (the inactivity probe)
// until the connection fails or ctx ends; everything else is read and
// ignored.
func serveOpenFlow(ctx context.Context, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if _, err := conn.Write(ofHeader(ofVersion15, ofptHello, 8, 0)); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(hdr[2:4]))
		if n < 8 {
			return fmt.Errorf("OpenFlow message of length %d", n)
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(conn, body); err != nil {
			return err
		}
		if hdr[1] == ofptEchoRequest {
			reply := append(ofHeader(hdr[0], ofptEchoReply, n, binary.BigEndian.Uint32(hdr[4:8])), body...)
			if _, err := conn.Write(reply); err != nil {
				return fmt.Errorf("echo reply: %w", err)
			}
		}
	}
}

func ofHeader(version, typ byte, length int, xid uint32) []byte {
	h := make([]byte, 8)
	h[0], h[1] = version, typ
	binary.BigEndian.PutUint16(h[2:4], uint16(length))
	binary.BigEndian.PutUint32(h[4:8], xid)
	return h
}
