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
// it exits (kill -9 included), and the next ovs-vswitchd that says hello is
// a new one, whose flow tables are empty: restarted is then called at once,
// instead of the loss being found by the periodic flow count check. A
// connection lost for another reason (the bridge deleted and added again,
// which also empties it) ends the same way; so does an ovs-vswitchd that
// was not there when the watcher started (the first syncs failed). A
// needless call costs a full sync that finds nothing to change. It returns
// when ctx ends.
//
// Only a hello counts: a connection can be accepted by the listening socket
// of an ovs-vswitchd that is still exiting (measured: the dial right after
// the kill -9 EOF succeeded, then was reset), which would have resynced a
// switch that was going away and then again when the new one came.
func watchVswitchd(ctx context.Context, path string, restarted func(), log logrus.FieldLogger) {
	const retry = 50 * time.Millisecond
	away := false // ovs-vswitchd went away (or was not there) since its last hello
	for ctx.Err() == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			away = true
		} else {
			greeted := false
			err = serveOpenFlow(ctx, conn, func() {
				greeted = true
				if away {
					log.Warn("ovs-vswitchd is back (its flow tables are empty): full resync")
					restarted()
				}
				away = false
			})
			away = true
			switch {
			case ctx.Err() != nil:
			case greeted:
				log.WithError(err).Warn("OpenFlow connection to ovs-vswitchd lost (restart?); reconnecting")
			default:
				log.WithError(err).Debug("ovs-vswitchd closed the connection before its hello (exiting?)")
			}
		}
		// Also after a lost connection: a socket that accepts and closes
		// at once must not make this loop spin.
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// serveOpenFlow says hello, calls hello when the switch's hello arrives,
// and answers echo requests (the inactivity probe) until the connection
// fails or ctx ends; everything else is read and ignored.
func serveOpenFlow(ctx context.Context, conn net.Conn, hello func()) error {
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
		switch hdr[1] {
		case ofptHello:
			if hello != nil {
				hello()
				hello = nil
			}
		case ofptEchoRequest:
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
