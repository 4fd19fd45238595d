package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ui shows progress on stderr: bars on a terminal, one line per phase
// otherwise (CI logs), nothing with --quiet.
type ui struct {
	quiet bool
	tty   bool
	label string
}

func newUI(quiet bool, label string) *ui {
	u := &ui{quiet: quiet, tty: term.IsTerminal(int(os.Stderr.Fd())), label: label}
	u.printf("%s", label)
	return u
}

func (u *ui) printf(format string, args ...any) {
	if !u.quiet {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// progress is a phase's bar.
type progress interface {
	set(n int64)
	add(n int64)
	finish()
}

func (u *ui) bar(desc string, max int64) progress {
	if u.quiet {
		return nopBar{}
	}
	if !u.tty {
		return &lineBar{desc: "  " + desc, start: time.Now()}
	}
	return &bar{progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription("  "+desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
	), "  " + desc, time.Now()}
}

// timeBar shows a phase of known length.
func (u *ui) timeBar(desc string, d time.Duration) progress {
	b := u.bar(desc, int64(d/time.Second))
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				b.set(int64(time.Since(start) / time.Second))
			}
		}
	}()
	return &timedBar{b, stop, start, d}
}

// wait holds for d, showing it.
func (u *ui) wait(ctx context.Context, desc string, d time.Duration) {
	b := u.timeBar(desc, d)
	defer b.finish()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type bar struct {
	*progressbar.ProgressBar
	desc  string
	start time.Time
}

func (b *bar) set(n int64) { _ = b.Set64(n) }
func (b *bar) add(n int64) { _ = b.Add64(n) }
func (b *bar) finish() {
	_ = b.Finish()
	fmt.Fprintf(os.Stderr, "%s: %d in %.1fs\n", b.desc, int64(b.State().CurrentNum), time.Since(b.start).Seconds())
}

// lineBar prints one line when its phase ends; phases report from many
// goroutines, so its count is atomic.
type lineBar struct {
	desc  string
	start time.Time
	n     atomic.Int64
}

func (b *lineBar) set(n int64) { b.n.Store(n) }
func (b *lineBar) add(n int64) { b.n.Add(n) }
func (b *lineBar) finish() {
	fmt.Fprintf(os.Stderr, "%s: %d in %.1fs\n", b.desc, b.n.Load(), time.Since(b.start).Seconds())
}

type timedBar struct {
	progress
	stop  chan struct{}
	start time.Time
	d     time.Duration
}

func (b *timedBar) finish() {
	close(b.stop)
	b.set(int64(min(time.Since(b.start), b.d) / time.Second))
	b.progress.finish()
}

type nopBar struct{}

func (nopBar) set(int64) {}
func (nopBar) add(int64) {}
func (nopBar) finish()   {}

// offsetBar shows a part of a longer phase on one bar.
type offsetBar struct {
	progress
	off int64
}

func (b offsetBar) set(n int64) { b.progress.set(b.off + n) }
