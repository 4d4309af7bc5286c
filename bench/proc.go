package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat, read from the auxiliary vector (AT_CLKTCK) because
// sysconf needs cgo; 100 on every Linux seen in practice.
var clockTicks = readClockTicks()

func readClockTicks() int64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for i := 0; i+16 <= len(b); i += 16 {
		key := binary.LittleEndian.Uint64(b[i:])
		val := binary.LittleEndian.Uint64(b[i+8:])
		if key == atClkTck && val > 0 {
			return int64(val)
		}
	}
	return 100
}

// cpuTicks returns the user plus system CPU time a process has used, in
// clock ticks (see clockTicks).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU extracts utime+stime from the text of /proc/<pid>/stat.
func parseStatCPU(stat []byte) (int64, error) {
	self, _, err := parseStatTimes(stat)
	return self, err
}

// parseStatTimes extracts a process's own CPU time (utime+stime) and that
// of its exited and reaped children (cutime+cstime) from the text of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// hold spaces, so fields are counted from the last ')'.
func parseStatTimes(stat []byte) (self, children int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime, stime, cutime and cstime are
	// fields 14 to 17.
	if len(fields) < 15 {
		return 0, 0, fmt.Errorf("malformed /proc stat: %d fields", len(fields))
	}
	var t [4]int64
	for k := range t {
		if t[k], err = strconv.ParseInt(fields[11+k], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("malformed /proc stat times: %w", err)
		}
	}
	return t[0] + t[1], t[2] + t[3], nil
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmHWM(b)
}

// parseVmHWM extracts VmHWM from the text of /proc/<pid>/status.
func parseVmHWM(status []byte) (int64, error) {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmHWM line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmHWM in status")
}

// machineBusyTicks returns the CPU time all processes of the machine have
// used (everything but idle and iowait in /proc/stat), in clock ticks.
func machineBusyTicks() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatBusy(b)
}

// parseProcStatBusy sums user, nice, system, irq, softirq and steal from
// the "cpu" line of /proc/stat.
func parseProcStatBusy(stat []byte) (int64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat")
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// cpuMeter accumulates CPU time over the measured segments only, so that
// unmeasured setup between segments does not count.
type cpuMeter struct {
	read  func() (int64, error) // ticks used so far
	ticks int64
	start int64
}

// processMeter measures one process.
func processMeter(pid int) *cpuMeter {
	return &cpuMeter{read: func() (int64, error) { return cpuTicks(pid) }}
}

// machineMeter measures every process of the machine together.
func machineMeter() *cpuMeter { return &cpuMeter{read: machineBusyTicks} }

// begin notes the CPU time at the start of a segment.
func (m *cpuMeter) begin() {
	m.start, _ = m.read()
}

// end adds the CPU time since begin.
func (m *cpuMeter) end() {
	if t, err := m.read(); err == nil {
		m.ticks += t - m.start
	}
}

// micros is the accumulated CPU time in microseconds.
func (m *cpuMeter) micros() float64 {
	return float64(m.ticks) * 1e6 / float64(clockTicks)
}

// commandTicks returns the CPU ticks used by every process whose command
// name (the comm field of /proc/<pid>/stat) is comm, its reaped children
// included.
func commandTicks(comm string) int64 {
	var sum int64
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != comm {
			continue
		}
		if self, children, err := parseStatTimes(b); err == nil {
			sum += self + children
		}
	}
	return sum
}

// groupMeter accumulates the CPU time of every process with one command
// name (PostgreSQL's) over the measured segments. It compares totals that
// include reaped children's time: a backend that exits during a segment (as
// pgbench's 64 do when it ends) leaves its whole time in the postmaster's
// cutime, so the difference still counts exactly its share, where summing
// the living processes would lose it.
type groupMeter struct {
	comm  string
	start int64
	ticks int64
}

func (m *groupMeter) begin() { m.start = commandTicks(m.comm) }

func (m *groupMeter) end() { m.ticks += commandTicks(m.comm) - m.start }

func (m *groupMeter) micros() float64 { return float64(m.ticks) * 1e6 / float64(clockTicks) }
