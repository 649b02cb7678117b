package main

import (
	"context"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/internal/ofconn"
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

// serveOpenFlow holds the connection (hello, echo replies) and calls hello
// when the switch's first hello arrives; everything else is read and
// ignored.
func serveOpenFlow(ctx context.Context, conn net.Conn, hello func()) error {
	return ofconn.Serve(ctx, conn, func(m ofconn.Message) error {
		if m.Type == ofconn.TypeHello && hello != nil {
			hello()
			hello = nil
		}
		return nil
	})
}
