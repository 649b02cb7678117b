package ovstest

import (
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// unixctl speaks OVS's unixctl protocol (JSON-RPC 1.0 over the daemon's
// control socket) directly: what ovs-appctl does, without a process per
// call. Tracing whole matrices is thousands of calls.
type unixctl struct {
	path string
	mu   sync.Mutex
	idle []*unixctlConn
}

type unixctlConn struct {
	c   net.Conn
	dec *json.Decoder
	id  int
}

type unixctlReply struct {
	ID     int              `json:"id"`
	Result *string          `json:"result"`
	Error  *json.RawMessage `json:"error"`
}

// call runs one command; connections are pooled so parallel callers each
// get their own.
func (u *unixctl) call(method string, params ...string) (string, error) {
	u.mu.Lock()
	var conn *unixctlConn
	if n := len(u.idle); n > 0 {
		conn, u.idle = u.idle[n-1], u.idle[:n-1]
	}
	u.mu.Unlock()
	if conn == nil {
		c, err := net.DialTimeout("unix", u.path, 5*time.Second)
		if err != nil {
			return "", err
		}
		conn = &unixctlConn{c: c, dec: json.NewDecoder(c)}
	}
	if params == nil {
		params = []string{}
	}
	conn.id++
	_ = conn.c.SetDeadline(time.Now().Add(30 * time.Second))
	req, _ := json.Marshal(map[string]any{"id": conn.id, "method": method, "params": params})
	var reply unixctlReply
	if _, err := conn.c.Write(req); err != nil {
		conn.c.Close()
		return "", err
	}
	if err := conn.dec.Decode(&reply); err != nil {
		conn.c.Close()
		return "", err
	}
	u.mu.Lock()
	u.idle = append(u.idle, conn)
	u.mu.Unlock()
	if reply.Error != nil && string(*reply.Error) != "null" {
		var msg string
		if json.Unmarshal(*reply.Error, &msg) != nil {
			msg = string(*reply.Error)
		}
		return "", fmt.Errorf("%s %v: %s", method, params, msg)
	}
	if reply.Result == nil {
		return "", nil
	}
	return *reply.Result, nil
}

func (u *unixctl) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.idle {
		c.c.Close()
	}
	u.idle = nil
}
