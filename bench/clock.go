package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// slotClock waits until each slot of the open loop's schedule is due. A Go
// timer cannot do that below a millisecond: when every goroutine waits, the
// runtime sleeps in epoll_wait, whose timeout is in whole milliseconds, so
// a 100 µs wait becomes about 1 ms and that millisecond's requests leave
// together. The generator then sends bursts the schedule does not have, and
// every latency, the floor's too, carries up to a millisecond of its own
// lag (measured: the floor's p50 0.58 ms and p99 1.36 ms at 10,000/s with a
// timer; 0.15 and 0.4–0.8 ms with this clock). A timerfd armed for the
// slot's time and read through the runtime's poller wakes epoll_wait itself
// when it expires, on the kernel's high-resolution timer.
type slotClock struct {
	f       *os.File
	base    time.Time       // when monoBase was read
	monoNS  int64           // CLOCK_MONOTONIC at base, in ns
	unwatch func() bool     // stops the ctx watcher
	spec    unix.ItimerSpec // reused: arming allocates nothing
}

// newSlotClock returns a clock whose waits end early, returning false,
// when ctx ends.
func newSlotClock(ctx context.Context) (*slotClock, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// Go's monotonic clock is CLOCK_MONOTONIC: read both, one after the
	// other, to turn a time.Time into the timerfd's absolute time. Go's
	// first: whatever passes between the two readings then makes every wake
	// that much late, never early.
	base := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("clock_gettime: %w", err)
	}
	c := &slotClock{f: os.NewFile(uintptr(fd), "slot-clock"), base: base, monoNS: ts.Nano()}
	c.unwatch = context.AfterFunc(ctx, func() { c.f.SetReadDeadline(time.Now()) })
	return c, nil
}

// until returns once at has come (at once if it has), or false as soon as
// ctx has ended.
func (c *slotClock) until(at time.Time) bool {
	if !time.Now().Before(at) {
		return true
	}
	c.spec.Value = unix.NsecToTimespec(c.monoNS + int64(at.Sub(c.base)))
	if err := unix.TimerfdSettime(int(c.f.Fd()), unix.TFD_TIMER_ABSTIME, &c.spec, nil); err != nil {
		panic(fmt.Sprintf("timerfd_settime: %v", err)) // only a bad fd or value: a bug here
	}
	var expirations [8]byte
	_, err := c.f.Read(expirations[:]) // the poller parks the goroutine until it expires
	return err == nil
}

func (c *slotClock) close() {
	c.unwatch()
	c.f.Close()
}
