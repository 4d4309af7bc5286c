package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The stall probe measures how much of a tail latency is the machine's.
//
// A process of its own does nothing but sleep 1 ms at a time, and reports
// every wake-up that came at least stallThreshold late: time in which the
// machine ran no thread that was ready to run. CPUs busy with other
// threads (the server, the generator) show up in it as short delays spread
// at random. A machine paused by its host shows up as longer ones at the
// same point of every 100 ms cycle: that is the default period of Linux's
// CPU quotas (CFS bandwidth control), which hosts use to hold virtual
// machines and containers to their share, and a common refill period of
// IO rate limiters.
//
// Measured here (2026-11-26, docs/benchmarks-history.md): beside Verity's SQLite
// rows at half of their peak the probe woke 5-14 ms late at every 100 ms
// boundary, 61-77 ms lost per second with nearly all of it in one fifth of
// the cycle, while beside the do-nothing server at the same rates it lost
// 1-7 ms a second, spread at random. It needs disk syncs and busy CPUs
// together: neither two threads spinning on the CPUs nor a loop of 4 KiB
// writes and fdatasync paused the machine, the loop beside one or two
// spinning threads did, and Verity on a tmpfs folder did not.
//
// The probe runs in its own process, not as a goroutine of the benchmark,
// so that Go's scheduler and the generator's goroutines do not delay it.

// stallThreshold is how late a 1 ms sleep must wake to count as a stall.
const stallThreshold = 2 * time.Millisecond

// stallProbeEnv, set to 1, makes this program the probe process.
const stallProbeEnv = "VERITY_BENCH_STALL_PROBE"

// stallHeartbeat is how often the probe reports that it is awake, so that
// the benchmark knows when every stall up to a moment has reached it.
const stallHeartbeat = 50 * time.Millisecond

// runStallProbe is the probe process: it sleeps 1 ms at a time and writes
// "<start> <late>" (Unix nanoseconds, nanoseconds) for every stall and
// "<now> 0" every stallHeartbeat, until writing fails (the benchmark,
// which reads the other end, is gone).
func runStallProbe(out io.Writer) error {
	w := bufio.NewWriter(out)
	lastBeat := time.Now()
	for {
		start := time.Now()
		time.Sleep(time.Millisecond)
		now := time.Now()
		late := now.Sub(start) - time.Millisecond
		wrote := false
		if late >= stallThreshold {
			fmt.Fprintf(w, "%d %d\n", start.UnixNano(), late.Nanoseconds())
			wrote = true
		}
		if now.Sub(lastBeat) >= stallHeartbeat {
			fmt.Fprintf(w, "%d 0\n", now.UnixNano())
			lastBeat, wrote = now, true
		}
		if wrote {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

// stall is one late wake-up: when the sleep began and how late it woke.
type stall struct {
	at   time.Time
	late time.Duration
}

// stallProbe runs the probe process and keeps what it reports.
type stallProbe struct {
	cmd *exec.Cmd

	mu     sync.Mutex
	stalls []stall
	seen   time.Time     // the probe has reported everything before this
	wake   *sync.Cond    // signalled when seen moves
	done   bool          // the probe's output ended
	ended  chan struct{} // closed once read has returned
}

// maxStalls bounds the stalls kept (a run that pauses a thousand times a
// second for ten minutes keeps 600,000, under 20 MB).
const maxStalls = 1 << 20

// startStallProbe starts exe (this program) as the probe process.
func startStallProbe(exe string) (*stallProbe, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), stallProbeEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the stall probe: %w", err)
	}
	p := &stallProbe{cmd: cmd, ended: make(chan struct{})}
	p.wake = sync.NewCond(&p.mu)
	go p.read(out)
	return p, nil
}

// read takes in the probe's reports until its output ends.
func (p *stallProbe) read(r io.Reader) {
	defer close(p.ended)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		at, late, ok := parseStallLine(sc.Text())
		if !ok {
			continue
		}
		p.mu.Lock()
		if late > 0 && len(p.stalls) < maxStalls {
			p.stalls = append(p.stalls, stall{at, late})
		}
		// A line is written on waking: every sleep begun before then is
		// reported. A heartbeat's time is its waking; a stall's sleep
		// began 1 ms and its lateness before it.
		woke := at
		if late > 0 {
			woke = at.Add(time.Millisecond + late)
		}
		if woke.After(p.seen) {
			p.seen = woke
		}
		p.mu.Unlock()
		p.wake.Broadcast()
	}
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
	p.wake.Broadcast()
}

// parseStallLine reads one "<start> <late>" line.
func parseStallLine(line string) (time.Time, time.Duration, bool) {
	a, b, ok := strings.Cut(line, " ")
	if !ok {
		return time.Time{}, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	late, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || late < 0 {
		return time.Time{}, 0, false
	}
	return time.Unix(0, start), time.Duration(late), true
}

// waitSeen waits until the probe has reported everything before t, or a
// second has passed, or it has stopped; it says whether it got there.
func (p *stallProbe) waitSeen(t time.Time) bool {
	deadline := time.Now().Add(time.Second)
	timer := time.AfterFunc(time.Second, func() {
		p.mu.Lock() // so that the waiter is in Wait, not between its check and Wait
		p.mu.Unlock()
		p.wake.Broadcast()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.seen.Before(t) && !p.done && time.Now().Before(deadline) {
		p.wake.Wait()
	}
	return !p.seen.Before(t)
}

// in returns the stalls that began inside the windows.
func (p *stallProbe) in(windows []window) []stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []stall
	for _, s := range p.stalls {
		for _, w := range windows {
			if !s.at.Before(w.from) && s.at.Before(w.to) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// stop ends the probe process: its output ends with it, then Wait may
// close the pipe.
func (p *stallProbe) stop() {
	p.cmd.Process.Kill()
	<-p.ended
	p.cmd.Wait()
}

// window is a span of measured time.
type window struct{ from, to time.Time }

// stallMeter is the meter a phase uses: it notes the phase's measured
// windows and, at the end, summarizes the stalls inside them.
type stallMeter struct {
	probe   *stallProbe // nil: no probe runs, the summary stays empty
	windows []window
	begun   time.Time
}

func (m *stallMeter) begin() { m.begun = time.Now() }

func (m *stallMeter) end() { m.windows = append(m.windows, window{m.begun, time.Now()}) }

// micros is the time lost to stalls, in µs (the meter interface's unit).
func (m *stallMeter) micros() float64 {
	s := m.summary()
	return s.LostMsPerSec * s.Seconds * 1000
}

// summary waits until the probe has reported the whole of the windows and
// summarizes their stalls.
func (m *stallMeter) summary() stallSummary {
	if m.probe == nil || len(m.windows) == 0 {
		return stallSummary{}
	}
	var measured time.Duration
	for _, w := range m.windows {
		measured += w.to.Sub(w.from)
	}
	complete := m.probe.waitSeen(m.windows[len(m.windows)-1].to)
	s := summarizeStalls(m.probe.in(m.windows), measured)
	s.Incomplete = !complete
	return s
}

// stallSummary is the probe's account of a phase.
type stallSummary struct {
	Seconds      float64 `json:"seconds"`         // measured time the probe covered
	Count        int     `json:"count"`           // wake-ups at least stallThreshold late
	LostMsPerSec float64 `json:"lost_ms_per_sec"` // their lateness, per second of measured time
	P99Ms        float64 `json:"p99_ms"`          // of the stalls' lateness
	MaxMs        float64 `json:"max_ms"`
	// CycleShare is the share of the lost time whose stalls began in the
	// busiest fifth of a 100 ms cycle (20 ms of each 100): about 0.2 for
	// pauses that fall anywhere, near 1 for a machine throttled to a CPU
	// quota with the default 100 ms period. 0 with fewer than
	// minCycleStalls stalls.
	CycleShare float64 `json:"cycle_share"`
	Incomplete bool    `json:"incomplete,omitempty"` // the probe had not reported up to the phase's end
}

// minCycleStalls is how many stalls CycleShare needs to mean anything.
const minCycleStalls = 10

// quotaPeriod is the default period of Linux's CFS bandwidth control.
const quotaPeriod = 100 * time.Millisecond

// summarizeStalls summarizes stalls over measured time.
func summarizeStalls(stalls []stall, measured time.Duration) stallSummary {
	s := stallSummary{Seconds: measured.Seconds(), Count: len(stalls)}
	if len(stalls) == 0 || measured <= 0 {
		return s
	}
	var lost time.Duration
	var bins [10]time.Duration
	lates := make([]time.Duration, len(stalls))
	for i, st := range stalls {
		lost += st.late
		lates[i] = st.late
		phase := time.Duration(st.at.UnixNano() % int64(quotaPeriod))
		bins[phase*10/quotaPeriod] += st.late
	}
	sum := summarize(lates)
	s.LostMsPerSec = ms(lost) / measured.Seconds()
	s.P99Ms, s.MaxMs = sum.P99, sum.Max
	if len(stalls) >= minCycleStalls {
		// The busiest pair of neighbouring 10 ms bins, so that pauses
		// straddling a bin edge still count as one place in the cycle.
		best := time.Duration(0)
		for i := range bins {
			best = max(best, bins[i]+bins[(i+1)%len(bins)])
		}
		s.CycleShare = min(1, float64(best)/float64(lost))
	}
	return s
}

// machineProbe is the run's stall probe, nil when none runs (tests).
var machineProbe *stallProbe

// stallNote tells, for a row's report, how much the machine stalled in its
// open loop and in its latency floor's run at the same rate.
func stallNote(s scenarioResult) string {
	o := s.Open.Stalls
	if o == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, " Machine stalls in the open loop (a process sleeping 1 ms at a time, woken %.0f ms or more late): %s", ms(stallThreshold), o.describe())
	if f := s.LatencyFloor; f != nil && f.Stalls != nil {
		fmt.Fprintf(&b, "; beside the do-nothing server at the same rate: %s", f.Stalls.describe())
	}
	b.WriteString(".")
	return b.String()
}

// describe gives a summary in words.
func (s *stallSummary) describe() string {
	if s.Count == 0 {
		return "none"
	}
	d := fmt.Sprintf("%.0f ms lost per second in %d stalls, p99 %.1f ms, longest %.1f ms", s.LostMsPerSec, s.Count, s.P99Ms, s.MaxMs)
	if s.CycleShare > 0 {
		d += fmt.Sprintf(", %.0f %% of the lost time in one fifth of the 100 ms cycle", 100*s.CycleShare)
	}
	if s.Incomplete {
		d += " (the probe fell behind: some may be missing)"
	}
	return d
}
