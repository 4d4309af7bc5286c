package main

import (
	"math"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary be the stall probe process, as the
// benchmark's own binary is.
func TestMain(m *testing.M) {
	if os.Getenv(stallProbeEnv) == "1" {
		runStallProbe(os.Stdout)
		return
	}
	os.Exit(m.Run())
}

func TestSummarizeStallsFindsTheQuotaCycle(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	var throttled, scattered []stall
	for i := range 20 {
		// The same point of every 100 ms cycle, as a CPU quota's pauses.
		throttled = append(throttled, stall{base.Add(time.Duration(i)*100*time.Millisecond + 45*time.Millisecond), 5 * time.Millisecond})
		// Spread evenly over the cycle.
		scattered = append(scattered, stall{base.Add(time.Duration(i)*100*time.Millisecond + time.Duration(i%10)*10*time.Millisecond + 5*time.Millisecond), 5 * time.Millisecond})
	}
	s := summarizeStalls(throttled, 2*time.Second)
	if s.Count != 20 || math.Abs(s.LostMsPerSec-50) > 1e-9 || s.MaxMs != 5 || s.CycleShare != 1 {
		t.Errorf("throttled: %+v, want 20 stalls, 50 ms lost per second, longest 5 ms, cycle share 1", s)
	}
	s = summarizeStalls(scattered, 2*time.Second)
	if math.Abs(s.CycleShare-0.2) > 1e-9 {
		t.Errorf("scattered: cycle share %v, want 0.2 (two tenths of the cycle hold a fifth of the pauses)", s.CycleShare)
	}
	if s := summarizeStalls(throttled[:minCycleStalls-1], time.Second); s.CycleShare != 0 {
		t.Errorf("%d stalls: cycle share %v, want 0 (too few to tell)", minCycleStalls-1, s.CycleShare)
	}
	if s := summarizeStalls(nil, time.Second); s.Count != 0 || s.LostMsPerSec != 0 || s.Seconds != 1 {
		t.Errorf("no stalls: %+v", s)
	}
}

func TestParseStallLine(t *testing.T) {
	at, late, ok := parseStallLine("1700000000000000001 2500000")
	if !ok || at.UnixNano() != 1700000000000000001 || late != 2500*time.Microsecond {
		t.Errorf("got %v %v %v", at, late, ok)
	}
	for _, bad := range []string{"", "1", "x 1", "1 y", "1 -5"} {
		if _, _, ok := parseStallLine(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestStallProbeSeesAPausedMachine pauses the probe process, as a host
// pauses a throttled machine, and expects the pause in the summary of the
// window that holds it, and only there. The pause is long against what a
// loaded machine adds or takes away (a stop that takes effect late, a wake
// that waits for a CPU: CI once saw 48 ms of an 80 ms pause), and a window
// that saw too little is tried again, twice at most.
func TestStallProbeSeesAPausedMachine(t *testing.T) {
	const pause, enough = 300 * time.Millisecond, 150.0 // enough: ms of it the probe must see
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probe, err := startStallProbe(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.stop()

	before := &stallMeter{probe: probe}
	before.begin()
	time.Sleep(200 * time.Millisecond)
	before.end()
	if b := before.summary(); b.Incomplete || b.MaxMs >= enough {
		t.Errorf("the window before the pause: %+v, want no stall of %.0f ms", b, enough)
	}

	pid := probe.cmd.Process.Pid
	var s stallSummary
	for attempt := 1; attempt <= 3; attempt++ {
		during := &stallMeter{probe: probe}
		during.begin()
		time.Sleep(50 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(pause)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		during.end()
		if s = during.summary(); !s.Incomplete && s.Count >= 1 && s.MaxMs >= enough {
			break
		}
		t.Logf("attempt %d: the window with a %v pause: %+v", attempt, pause, s)
	}
	if s.Incomplete || s.Count < 1 || s.MaxMs < enough {
		t.Fatalf("the window with a %v pause: %+v, want a stall of at least %.0f ms", pause, s, enough)
	}
	if s.Seconds < 0.4 || s.LostMsPerSec < enough/s.Seconds {
		t.Errorf("the window with a %v pause: %+v, want its lost time counted", pause, s)
	}
}

func TestStallNoteGivesTheRowAndItsFloor(t *testing.T) {
	row := scenarioResult{Name: "check",
		Open:         phaseJSON{Stalls: &stallSummary{Seconds: 4, Count: 38, LostMsPerSec: 70, P99Ms: 12.1, MaxMs: 12.1, CycleShare: 0.99}},
		LatencyFloor: &phaseJSON{Stalls: &stallSummary{Seconds: 4, Count: 8, LostMsPerSec: 5, P99Ms: 3.4, MaxMs: 3.4}},
	}
	want := " Machine stalls in the open loop (a process sleeping 1 ms at a time, woken 2 ms or more late): 70 ms lost per second in 38 stalls, p99 12.1 ms, longest 12.1 ms, 99 % of the lost time in one fifth of the 100 ms cycle; beside the do-nothing server at the same rate: 5 ms lost per second in 8 stalls, p99 3.4 ms, longest 3.4 ms."
	if got := stallNote(row); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := stallNote(scenarioResult{Name: "check"}); got != "" {
		t.Errorf("without the probe: %q, want nothing", got)
	}
}
