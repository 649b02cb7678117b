package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// A port nothing listens on (yet): connections to it are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestWaitForAPIServer(t *testing.T) {
	client := &http.Client{Transport: waitForAPIServer{next: &http.Transport{}, interval: 20 * time.Millisecond}}
	cases := []struct {
		name     string
		method   string
		startIn  time.Duration // the server starts listening after this (0: never)
		ctxLimit time.Duration
		wantOK   bool
		wantErr  string
		// wantCtxErr: the error is the context's, and client-go must not
		// see "connection refused" in its chain (its reflector would wait
		// out a backoff before noticing it was stopped).
		wantCtxErr bool
	}{
		{name: "GET waits for the server", method: http.MethodGet, startIn: 300 * time.Millisecond, ctxLimit: 10 * time.Second, wantOK: true},
		{name: "GET gives up with its context", method: http.MethodGet, ctxLimit: 200 * time.Millisecond, wantErr: "connection refused", wantCtxErr: true},
		{name: "POST is not sent again", method: http.MethodPost, startIn: 300 * time.Millisecond, ctxLimit: 10 * time.Second, wantErr: "connection refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := closedPort(t)
			if c.startIn > 0 {
				timer := time.AfterFunc(c.startIn, func() {
					l, err := net.Listen("tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
						ReadHeaderTimeout: time.Second}
					go func() { _ = srv.Serve(l) }()
					t.Cleanup(func() { srv.Close() })
				})
				defer timer.Stop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.ctxLimit)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, c.method, "http://"+addr+"/api", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			switch {
			case c.wantOK && (err != nil || resp.StatusCode != http.StatusOK):
				t.Fatalf("got %v, %v; want 200", resp, err)
			case !c.wantOK && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("got %v; want an error with %q", err, c.wantErr)
			case c.wantCtxErr && (!errors.Is(err, context.DeadlineExceeded) || utilnet.IsConnectionRefused(err)):
				t.Fatalf("got %v (context error %v, connection refused %v); want the context's error, not a connection refused",
					err, errors.Is(err, context.DeadlineExceeded), utilnet.IsConnectionRefused(err))
			}
		})
	}
}

func TestIsDialError(t *testing.T) {
	if !isDialError(&net.OpError{Op: "dial", Err: errors.New("connection refused")}) {
		t.Error("a dial OpError is a dial error")
	}
	if isDialError(&net.OpError{Op: "read", Err: errors.New("connection reset")}) {
		t.Error("a read error is not a dial error: the request may have reached the server")
	}
}

// An informer whose kube-apiserver is away stops as soon as it is told to:
// its watch request is waiting in waitForAPIServer, and the error it gets
// when its context ends must not make the reflector back off first. The
// stop time is reported (it was 0.8-3 s, up to 30 s, before the fix).
func TestInformerStopsDuringAPIServerOutage(t *testing.T) {
	cfg := &rest.Config{Host: "http://" + closedPort(t)}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return waitForAPIServer{next: rt, interval: 20 * time.Millisecond}
	})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactory(client, 0)
	factory.Core().V1().Namespaces().Informer()
	factory.Start(ctx.Done())
	// Long enough for the reflector's list or watch to be waiting here.
	time.Sleep(time.Second)
	stopAt := time.Now()
	cancel()
	factory.Shutdown()
	t.Logf("informer stopped %v after its context ended (kube-apiserver unreachable)", time.Since(stopAt).Round(time.Microsecond))
}
