// Package testproc starts the daemons tests depend on (ovsdb-server,
// ovs-vswitchd, etcd, kube-apiserver, the agent) so that they die with the
// test process, and reads their logs for failure messages.
package testproc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// Pdeathsig (set by callers in SysProcAttr) fires when the OS thread that
// started the child exits, not the process. Go ends threads whose goroutine
// exits while locked to them (as network-namespace code does), so every
// daemon is started from one goroutine that stays locked to its thread.
var (
	spawnOnce sync.Once
	spawnReq  chan spawnRequest
)

type spawnRequest struct {
	cmd *exec.Cmd
	res chan error
}

// Start starts cmd from the one stable thread.
func Start(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnReq {
				r.res <- r.cmd.Start()
			}
		}()
	})
	res := make(chan error)
	spawnReq <- spawnRequest{cmd, res}
	return <-res
}

// Daemon is a long-running child process started by StartDaemon.
type Daemon struct {
	Name string
	Cmd  *exec.Cmd
	Log  string        // file with the process's output
	Done chan struct{} // closed when the process has exited
	Err  error         // exit status, valid after Done
}

// StartDaemon starts cmd (its output already directed to log) as a child
// that gets SIGKILL when the test process dies, so that a crashed or killed
// test leaves no daemons behind, and watches for its exit.
func StartDaemon(name, log string, cmd *exec.Cmd) (*Daemon, error) {
	d := &Daemon{Name: name, Cmd: cmd, Log: log, Done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := Start(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { d.Err = cmd.Wait(); close(d.Done) }()
	return d, nil
}

// Tail returns the last n lines of a file (or the error reading it).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
