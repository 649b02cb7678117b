package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
	}{
		{name: "GET waits for the server", method: http.MethodGet, startIn: 300 * time.Millisecond, ctxLimit: 10 * time.Second, wantOK: true},
		{name: "GET gives up with its context", method: http.MethodGet, ctxLimit: 200 * time.Millisecond, wantErr: "connection refused"},
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
