package attack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kinds of attack a Spec names.
const (
	KindPartial  = "partial"  // HoldPartial: Size-byte first fragments, held
	KindTrickle  = "trickle"  // Trickle: a byte every Every
	KindBombs    = "bombs"    // Bombs: inflating to Size, Ratio times
	KindOps      = "ops"      // FloodOps: Op as fast as read; SendOps with Count
	KindChannels = "channels" // FloodChannels: Size-byte publishes to channels named Channel + n, new ones or Spread of them
	KindStall    = "stall"    // StallReaders: subscribed to Channel, never reading, while Publisher publishes Size bytes there Rate times a second

	KindChurn       = "churn"       // Churn: upgrade with Query, close at once, again
	KindResubscribe = "resubscribe" // Resubscribe: subscribe to Channel and unsubscribe, as fast as read
	KindMembers     = "members"     // Members: upgrade with Query and stay, reading; Op Rate times a second (0: as fast as read) when set

	KindStreamOps = "streamops" // StreamOps: an event stream with Query, Op posted 100 to a request as fast as answered
)

// Spec describes one attack, for Run here or in a child process.
type Spec struct {
	Kind    string        `json:"kind"`
	Target  Target        `json:"target"`
	Conns   int           `json:"conns"`
	Size    int           `json:"size,omitempty"`
	Ratio   int           `json:"ratio,omitempty"`
	Every   time.Duration `json:"every,omitempty"`
	Op      string        `json:"op,omitempty"`
	Channel string        `json:"channel,omitempty"`
	Spread  int           `json:"spread,omitempty"`
	// Count, when positive, is how many times each connection of an ops
	// attack sends Op before it waits for the gateway to close it.
	Count int `json:"count,omitempty"`
	// Query is added to the upgrades' query (churn, resubscribe,
	// members): channels=…, info=… (see Info).
	Query string `json:"query,omitempty"`
	// Publisher and Rate drive the publishes of a stall attack (its Stats
	// count them as messages); Rate is also how often members send Op.
	Publisher *Publisher `json:"publisher,omitempty"`
	Rate      float64    `json:"rate,omitempty"`
}

// Run plays the attack in this process until ctx ends.
func (s Spec) Run(ctx context.Context, st *Stats) error {
	t := &s.Target
	switch s.Kind {
	case KindPartial:
		t.HoldPartial(ctx, s.Conns, s.Size, st)
	case KindTrickle:
		t.Trickle(ctx, s.Conns, s.Every, st)
	case KindBombs:
		t.Bombs(ctx, s.Conns, s.Size, s.Ratio, st)
	case KindOps:
		if s.Count > 0 {
			t.SendOps(ctx, s.Conns, s.Op, s.Count, st)
			break
		}
		t.FloodOps(ctx, s.Conns, s.Op, st)
	case KindChannels:
		t.FloodChannels(ctx, s.Conns, s.Channel, s.Size, s.Spread, st)
	case KindStall:
		var wg sync.WaitGroup
		if s.Publisher != nil && s.Rate > 0 {
			wg.Go(func() { s.Publisher.Drive(ctx, s.Channel, s.Size, s.Rate, st) })
		}
		t.StallReaders(ctx, s.Conns, s.Channel, st)
		wg.Wait()
	case KindChurn:
		t.Churn(ctx, s.Conns, s.Query, st)
	case KindResubscribe:
		t.Resubscribe(ctx, s.Conns, s.Channel, s.Query, st)
	case KindMembers:
		t.Members(ctx, s.Conns, s.Query, s.Op, s.Rate, st)
	case KindStreamOps:
		t.StreamOps(ctx, s.Conns, s.Op, st)
	default:
		return fmt.Errorf("attack: unknown kind %q", s.Kind)
	}
	return nil
}

// An attack measured beside a healthy client should cost the machine
// what a remote attacker's would: nothing but the gateway's side. On one
// machine the attackers' own sending competes for the CPU with the
// gateway and the healthy client, and would be measured as the gateway's
// slowness, so Spawn runs them in a child process at the lowest CPU
// priority (nice 19).

// childEnv holds the Spec of a child process started by Spawn.
const childEnv = "PUSHGATE_ATTACK_SPEC"

// RunChild plays the attack of a child process started by Spawn, if this
// process is one, and reports whether it was: the program Spawn starts
// (internal/attack/attacker, or a program that re-runs itself) calls it
// first, and exits if it returns true. The child plays until its stdin
// closes, then writes its Tally as JSON to stdout.
func RunChild() bool {
	raw := os.Getenv(childEnv)
	if raw == "" {
		return false
	}
	var spec Spec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "attack child:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
		cancel()
	}()
	var st Stats
	if err := spec.Run(ctx, &st); err != nil {
		fmt.Fprintln(os.Stderr, "attack child:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(st.Tally()); err != nil {
		os.Exit(1)
	}
	return true
}

// Child is an attack running in a child process.
type Child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    strings.Builder
	errOut strings.Builder
	exited chan error

	stop  sync.Once
	tally Tally
	err   error
}

// Spawn starts spec in a child process: argv (a program that calls
// RunChild first) under nice 19, killed if this process dies.
func Spawn(spec Spec, argv ...string) (*Child, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if nice, err := exec.LookPath("nice"); err == nil {
		argv = append([]string{nice, "-n", "19"}, argv...)
	}
	c := &Child{cmd: exec.Command(argv[0], argv[1:]...), exited: make(chan error, 1)}
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.errOut
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.exited <- c.cmd.Wait() }()
	return c, nil
}

// Stop ends the attack and returns what it counted. A child that does
// not stop within 10s is killed. Later calls return the same.
func (c *Child) Stop() (Tally, error) {
	c.stop.Do(func() {
		c.stdin.Close()
		var err error
		select {
		case err = <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			err = errors.Join(errors.New("did not stop within 10s; killed"), <-c.exited)
		}
		if err == nil {
			err = json.Unmarshal([]byte(c.out.String()), &c.tally)
		}
		if err != nil {
			c.err = fmt.Errorf("attack child: %w: %s", err, strings.TrimSpace(c.errOut.String()))
		}
	})
	return c.tally, c.err
}
