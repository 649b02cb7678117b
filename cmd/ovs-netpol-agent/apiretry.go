package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// waitForAPIServer wraps the agent's API transport: a GET that could not
// even connect to kube-apiserver (the dial failed, so nothing reached the
// server) is sent again every interval until it connects or its context
// ends, instead of failing at once.
//
// Why: an informer's reflector backs off exponentially after each failed
// list or watch, reaching [30 s, 60 s) between tries once kube-apiserver has
// been away for about a minute, so changes made just after it comes back
// waited that long (measured in e2e TestFaultAPIServerDown: a policy
// enforced 51-61 s after kube-apiserver was ready again). With the GET
// waiting here, the reflector's next try goes out within interval of the
// server answering. Only GETs are retried (lists and watches: safe to send
// again), and only dial errors.
type waitForAPIServer struct {
	next     http.RoundTripper
	interval time.Duration
}

func (w waitForAPIServer) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		resp, err := w.next.RoundTrip(req)
		if err == nil || req.Method != http.MethodGet || req.Body != nil || !isDialError(err) {
			return resp, err
		}
		select {
		case <-req.Context().Done():
			// The context's error, not the dial error: client-go's
			// reflector answers "connection refused" by waiting out its
			// backoff (0.8 s to 30 s, not interruptible in watch-list
			// mode), which delayed the agent's exit on SIGTERM during an
			// outage by that much. %v keeps the dial error out of the
			// chain so client-go does not classify it.
			return nil, fmt.Errorf("%w (kube-apiserver unreachable: %v)", req.Context().Err(), err)
		case <-time.After(w.interval):
		}
	}
}

// isDialError reports whether err is a failure to connect (refused,
// unreachable, timed out while dialing): the request was never sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
