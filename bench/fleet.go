package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// fleet is the worker processes of one run: the coordinator's handle on
// every client connection.
type fleet struct {
	procs []*workerProc
}

type workerProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	enc    *json.Encoder
	events chan event
	stderr *tailBuffer
	// sources are this worker's loopback source addresses.
	sources []string
}

// sourcesPerWorker is how many loopback source addresses each worker
// dials from, so ephemeral ports (and TIME_WAIT under churn) never run out.
const sourcesPerWorker = 4

// startFleet starts n workers, worker i dialling from the addresses
// following first by sourcesPerWorker*i.
func startFleet(n int, first net.IP) (*fleet, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	base := first.To4()
	if base == nil || !base.IsLoopback() {
		return nil, fmt.Errorf("--source %s: need an IPv4 loopback address", first)
	}
	f := &fleet{}
	for i := range n {
		p := &workerProc{events: make(chan event, 64), stderr: &tailBuffer{}}
		for k := range sourcesPerWorker {
			ip, err := addIP(base, i*sourcesPerWorker+k)
			if err != nil {
				f.stop()
				return nil, err
			}
			p.sources = append(p.sources, ip.String())
		}
		p.cmd = exec.Command(self, "worker")
		p.cmd.Stderr = p.stderr
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if p.in, err = p.cmd.StdinPipe(); err != nil {
			f.stop()
			return nil, err
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			f.stop()
			return nil, err
		}
		if err := p.cmd.Start(); err != nil {
			f.stop()
			return nil, err
		}
		p.enc = json.NewEncoder(p.in)
		go func() {
			defer close(p.events)
			dec := json.NewDecoder(out)
			for {
				var ev event
				if dec.Decode(&ev) != nil {
					return
				}
				p.events <- ev
			}
		}()
		f.procs = append(f.procs, p)
	}
	return f, nil
}

// addIP returns base+n within 127.0.0.0/8.
func addIP(base net.IP, n int) (net.IP, error) {
	v := uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(n)
	if v >= 1<<24-1 {
		return nil, errors.New("out of loopback source addresses")
	}
	return net.IPv4(127, byte(v>>16), byte(v>>8), byte(v)), nil
}

// do sends cmds[i] to worker i (nil skips it) and waits for every
// worker's answer; progress events go to onProgress as they come.
func (f *fleet) do(ctx context.Context, cmds []*command, onProgress func(worker int, ev event)) ([]event, error) {
	out := make([]event, len(f.procs))
	errs := make([]error, len(f.procs))
	var wg sync.WaitGroup
	for i, p := range f.procs {
		if cmds[i] == nil {
			continue
		}
		if err := p.enc.Encode(cmds[i]); err != nil {
			return nil, fmt.Errorf("worker %d: %w: %s", i, err, p.stderr.String())
		}
		wg.Go(func() {
			for {
				select {
				case ev, ok := <-p.events:
					switch {
					case !ok:
						errs[i] = fmt.Errorf("worker %d exited: %s", i, strings.TrimSpace(p.stderr.String()))
						return
					case ev.Ev == "progress":
						if onProgress != nil {
							onProgress(i, ev)
						}
						continue
					case ev.Ev == "error":
						errs[i] = fmt.Errorf("worker %d: %s", i, ev.Message)
					}
					out[i] = ev
					return
				case <-ctx.Done():
					errs[i] = ctx.Err()
					return
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// each sends the same command to every worker.
func (f *fleet) each(ctx context.Context, cmd command) ([]event, error) {
	cmds := make([]*command, len(f.procs))
	for i := range cmds {
		cmds[i] = &cmd
	}
	return f.do(ctx, cmds, nil)
}

// stop ends the workers: closing stdin makes each close its connections
// and exit; one that has not within 30 seconds is killed.
func (f *fleet) stop() {
	for _, p := range f.procs {
		if p.in != nil {
			p.in.Close()
		}
	}
	for _, p := range f.procs {
		if p.cmd.Process == nil {
			continue
		}
		kill := time.AfterFunc(30*time.Second, func() { _ = p.cmd.Process.Kill() })
		_ = p.cmd.Wait()
		kill.Stop()
	}
}

// tailBuffer keeps the last 4 KiB a worker wrote to stderr, for error
// messages; the worker writes while the coordinator may read.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 4<<10 {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-4<<10:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
