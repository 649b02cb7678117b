package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/ovsdb-schema/vswitchd"
)

// Timing of the connection watchdog and the reconnect backoff. Variables so
// that tests can shorten them.
var (
	probeInterval  = 5 * time.Second  // echo request after this much time
	probeTimeout   = 5 * time.Second  // no echo reply within this: connection is dead
	dialTimeout    = 10 * time.Second // one connect+monitor attempt
	backoffInitial = 100 * time.Millisecond
	backoffMax     = 5 * time.Second
)

// Client is a connection to the Open_vSwitch database with a local cache of
// the bridges, ports and interfaces. It is safe for concurrent use.
type Client struct {
	endpoint string
	log      logrus.FieldLogger
	dbModel  model.ClientDBModel

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the reconnect loop has ended

	mu   sync.RWMutex
	conn *conn // current connection, or the last one while reconnecting

	// changed is closed and replaced on every cache event of any table and
	// after a reconnect: writers wait on it for their effect to show up.
	changedMu sync.Mutex
	changed   chan struct{}

	subMu  sync.Mutex
	subs   []chan struct{}
	closed bool
}

// conn is one libovsdb connection and the cache it filled.
type conn struct {
	ovs   client.Client
	cache *cache.TableCache
}

// Connect dials the OVSDB server at endpoint ("unix:/path" or "tcp:host:port"),
// monitors the tables it needs and returns once the cache is filled. It
// retries until ctx ends (so an agent may start before ovsdb-server), and
// returns the last error then. Later disconnects are handled by the Client
// itself until Close. log may be nil.
func Connect(ctx context.Context, endpoint string, log logrus.FieldLogger) (*Client, error) {
	if log == nil {
		l := logrus.New()
		l.Out = discard{}
		log = l
	}
	dbModel, err := vswitchd.FullDatabaseModel()
	if err != nil {
		return nil, fmt.Errorf("ovsdb: database model: %w", err)
	}
	c := &Client{
		endpoint: endpoint,
		log:      log.WithField("ovsdb", endpoint),
		dbModel:  dbModel,
		done:     make(chan struct{}),
		changed:  make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, err := c.dialRetry(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.conn = cn
	go c.run(cn)
	return c, nil
}

// Close ends the connection and the reconnect loop and closes the channels
// returned by Subscribe. Reads after Close answer from the last cache;
// writes fail.
func (c *Client) Close() {
	c.cancel()
	<-c.done
	c.current().ovs.Close()
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if !c.closed {
		c.closed = true
		for _, ch := range c.subs {
			close(ch)
		}
	}
}

// Subscribe returns a channel that receives a signal whenever a Bridge, Port
// or Interface row changes in the cache, and after a reconnect. Signals
// coalesce (buffer 1): on each, re-read what you need (e.g. PodPorts). The
// channel is closed by Close.
func (c *Client) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.closed {
		close(ch)
	} else {
		c.subs = append(c.subs, ch)
	}
	return ch
}

func (c *Client) notifySubscribers() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if c.closed {
		return
	}
	for _, ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is pending already
		}
	}
}

// changedChan returns the channel that is closed on the next cache change.
// Take it before checking a condition, so no change between the check and
// the wait is missed.
func (c *Client) changedChan() <-chan struct{} {
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	return c.changed
}

func (c *Client) broadcast() {
	c.changedMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.changedMu.Unlock()
}

func (c *Client) onEvent(table string) {
	c.broadcast()
	switch table {
	case vswitchd.BridgeTable, vswitchd.PortTable, vswitchd.InterfaceTable:
		c.notifySubscribers()
	}
}

func (c *Client) current() *conn {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.conn
}

// waitFor calls cond on every cache change until it returns true or an
// error, or until ctx ends.
func (c *Client) waitFor(ctx context.Context, what string, cond func(tc *cache.TableCache) (bool, error)) error {
	for {
		ch := c.changedChan()
		ok, err := cond(c.current().cache)
		if err != nil || ok {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ovsdb: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// run watches the connection and replaces it after a disconnect, until Close.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	for {
		if !c.watch(cn) {
			return
		}
		// Stop the old client for good; its cache stays readable.
		cn.ovs.Close()
		c.log.Warn("connection to OVSDB lost; reconnecting, reads answer from the last known state meanwhile")
		next, err := c.dialRetry(c.ctx)
		if err != nil {
			return // closed
		}
		c.mu.Lock()
		c.conn = next
		c.mu.Unlock()
		c.log.Info("reconnected to OVSDB")
		cn = next
		c.broadcast()
		c.notifySubscribers()
	}
}

// watch returns true when the connection is lost and false on Close.
// DisconnectNotify alone is not enough: libovsdb sends on it without
// blocking, so a notification while nobody receives is lost, and a server
// that hangs never disconnects. The echo probe covers both.
func (c *Client) watch(cn *conn) bool {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return false
		case <-cn.ovs.DisconnectNotify():
			return true
		case <-t.C:
			ctx, cancel := context.WithTimeout(c.ctx, probeTimeout)
			err := cn.ovs.Echo(ctx)
			cancel()
			if c.ctx.Err() != nil {
				return false
			}
			if err != nil {
				c.log.WithError(err).Warn("OVSDB echo probe failed")
				return true
			}
		}
	}
}

// dialRetry dials with exponential backoff until it succeeds or ctx ends.
func (c *Client) dialRetry(ctx context.Context) (*conn, error) {
	delay := backoffInitial
	for attempt := 1; ; attempt++ {
		cn, err := c.dial(ctx)
		if err == nil {
			return cn, nil
		}
		entry := c.log.WithError(err).WithField("attempt", attempt)
		if attempt == 1 {
			entry.Warn("cannot connect to OVSDB; retrying")
		} else {
			entry.Debug("cannot connect to OVSDB; retrying")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ovsdb: connecting to %s: %w (last error: %v)", c.endpoint, ctx.Err(), err)
		case <-c.ctx.Done():
			return nil, errors.New("ovsdb: client closed")
		case <-time.After(delay):
		}
		delay = min(2*delay, backoffMax)
	}
}

// dial makes one new libovsdb client, connects it and monitors the tables.
// A fresh client per connection (instead of reconnecting the old one) keeps
// the old cache intact for readers until the new one is complete.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	lg := c.logr()
	ovs, err := client.NewOVSDBClient(c.dbModel, client.WithEndpoint(c.endpoint), client.WithLogger(&lg))
	if err != nil {
		return nil, err
	}
	if err := ovs.Connect(ctx); err != nil {
		return nil, err
	}
	tc := ovs.Cache()
	// Registered before the monitor fills the cache, so the initial rows
	// raise events too (harmless: the swap signals anyway).
	tc.AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc:    func(table string, _ model.Model) { c.onEvent(table) },
		UpdateFunc: func(table string, _, _ model.Model) { c.onEvent(table) },
		DeleteFunc: func(table string, _ model.Model) { c.onEvent(table) },
	})
	var (
		root  vswitchd.OpenvSwitch
		br    vswitchd.Bridge
		port  vswitchd.Port
		iface vswitchd.Interface
		ft    vswitchd.FlowTable
	)
	mon := ovs.NewMonitor(
		client.WithTable(&root, &root.Bridges, &root.NextCfg, &root.CurCfg),
		client.WithTable(&br, &br.Name, &br.Ports, &br.DatapathType, &br.FailMode, &br.Protocols, &br.FlowTables, &br.OtherConfig),
		client.WithTable(&port, &port.Name, &port.Interfaces),
		client.WithTable(&iface, &iface.Name, &iface.Type, &iface.Ofport, &iface.Error, &iface.ExternalIDs, &iface.Options, &iface.OfportRequest, &iface.MTURequest),
		client.WithTable(&ft, &ft.Name),
	)
	if _, err := ovs.Monitor(ctx, mon); err != nil {
		ovs.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return &conn{ovs: ovs, cache: tc}, nil
}

// logr routes libovsdb's logs (levels 0..3: connection events and errors)
// to our logger at debug level; ours already reports what matters.
func (c *Client) logr() logr.Logger {
	return funcr.New(func(prefix, args string) {
		c.log.Debugf("libovsdb: %s %s", prefix, args)
	}, funcr.Options{Verbosity: 3})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
