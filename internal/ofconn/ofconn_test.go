package ofconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestServe plays the switch: Serve's hello, an echo answered in the
// request's version with its xid and payload, other messages handed over
// whole, a handler error ending Serve, and ctx ending it.
func TestServe(t *testing.T) {
	sw, ours := net.Pipe()
	defer sw.Close()
	sw.SetDeadline(time.Now().Add(10 * time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Message, 4)
	stopErr := errors.New("enough")
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ours, func(m Message) error {
			got <- m
			if m.Type == TypeSetConfig {
				return stopErr
			}
			return nil
		})
	}()
	hello := make([]byte, 8)
	if _, err := io.ReadFull(sw, hello); err != nil || !bytes.Equal(hello, Header(Version15, TypeHello, 8, 0)) {
		t.Fatalf("hello: %x, %v", hello, err)
	}
	if _, err := sw.Write(Header(0x04, TypeHello, 8, 7)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.Type != TypeHello || m.Version != 0x04 || m.XID != 7 || len(m.Body) != 0 {
		t.Fatalf("hello handed over as %+v", m)
	}
	if _, err := sw.Write(append(Header(0x04, TypeEchoRequest, 12, 0xdeadbeef), 1, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 12)
	if _, err := io.ReadFull(sw, reply); err != nil {
		t.Fatal(err)
	}
	if want := append(Header(0x04, TypeEchoReply, 12, 0xdeadbeef), 1, 2, 3, 4); !bytes.Equal(reply, want) {
		t.Fatalf("echo reply %x, want %x", reply, want)
	}
	if _, err := sw.Write(append(Header(Version15, TypeSetConfig, 10, 3), 9, 9)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.Type != TypeSetConfig || !bytes.Equal(m.Body, []byte{9, 9}) {
		t.Fatalf("message handed over as %+v", m)
	}
	if err := <-done; !errors.Is(err, stopErr) {
		t.Fatalf("Serve returned %v, want the handler's error", err)
	}
	if len(got) != 0 {
		t.Fatalf("the echo request was handed over too: %+v", <-got)
	}

	// A message shorter than its header ends Serve with an error.
	sw2, ours2 := net.Pipe()
	defer sw2.Close()
	go func() { done <- Serve(ctx, ours2, func(Message) error { return nil }) }()
	io.ReadFull(sw2, hello)
	sw2.Write(Header(Version15, TypeHello, 4, 0))
	if err := <-done; err == nil {
		t.Fatal("Serve accepted a message of length 4")
	}

	// ctx ending closes the connection and ends Serve.
	sw3, ours3 := net.Pipe()
	defer sw3.Close()
	go func() { done <- Serve(ctx, ours3, func(Message) error { return nil }) }()
	io.ReadFull(sw3, hello)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve returned nil after its context ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
