package netpoll

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Task is a unit of work for a Pool. A connection schedules itself (or a
// named view of itself) as a Task, so scheduling allocates nothing.
type Task interface{ Run() }

// Pool runs Tasks on a fixed set of worker goroutines fed by a bounded
// queue. Poller callbacks schedule onto it. Tasks must not block on I/O and
// must not call Schedule: with the queue full, every worker would wait.
type Pool struct {
	tasks   chan Task
	quit    chan struct{}
	busy    atomic.Int64
	wg      sync.WaitGroup
	onPanic func(any)

	// mu is held (shared) by Schedule while it sends, so that Close
	// cannot slip between its check of closed and the send.
	mu     sync.RWMutex
	closed bool
}

// PoolConfig configures a Pool. The zero value is usable.
type PoolConfig struct {
	// Workers is the number of worker goroutines (default 8 × GOMAXPROCS).
	Workers int
	// Queue bounds the tasks waiting for a worker (default 8192). When it
	// is full, Schedule blocks: the poller stops taking events until
	// workers catch up.
	Queue int
	// OnPanic receives a task's panic value; the worker goes on. Without
	// it a panicking task crashes the process.
	OnPanic func(any)
}

// NewPool starts a Pool's workers.
func NewPool(c PoolConfig) *Pool {
	if c.Workers <= 0 {
		c.Workers = 8 * runtime.GOMAXPROCS(0)
	}
	if c.Queue <= 0 {
		c.Queue = 8192
	}
	p := &Pool{
		tasks:   make(chan Task, c.Queue),
		quit:    make(chan struct{}),
		onPanic: c.OnPanic,
	}
	p.wg.Add(c.Workers)
	for range c.Workers {
		go p.work()
	}
	return p
}

// Schedule queues t, waiting while the queue is full. It reports false, and
// drops t, once the Pool is closing.
func (p *Pool) Schedule(t Task) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	p.tasks <- t // workers run until closed is set, so this returns
	return true
}

// Busy is the number of workers running a task.
func (p *Pool) Busy() int { return int(p.busy.Load()) }

// Queued is the number of tasks waiting for a worker.
func (p *Pool) Queued() int { return len(p.tasks) }

// Close runs the tasks already queued, stops the workers and waits for
// them. Tasks scheduled after Close are dropped.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Pool) work() {
	defer p.wg.Done()
	for {
		select {
		case t := <-p.tasks:
			p.run(t)
		case <-p.quit:
			for {
				select {
				case t := <-p.tasks:
					p.run(t)
				default:
					return
				}
			}
		}
	}
}

func (p *Pool) run(t Task) {
	p.busy.Add(1)
	defer p.busy.Add(-1)
	if p.onPanic != nil {
		defer func() {
			if v := recover(); v != nil {
				p.onPanic(v)
			}
		}()
	}
	t.Run()
}
