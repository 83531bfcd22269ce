package perf

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on
// every Linux ABI Go supports.
const clockTicks = 100

// ProcUsage is a process's CPU time so far and resident memory now.
type ProcUsage struct {
	CPU time.Duration // user + system
	RSS int64         // bytes
}

// ReadProc reads /proc/PID/stat (pid 0: this process).
func ReadProc(pid int) (ProcUsage, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ProcUsage{}, err
	}
	return parseStat(data)
}

// parseStat takes utime (14), stime (15) and rss (24, pages) from a stat
// line; the comm field (2) may hold spaces, so fields count from its ')'.
func parseStat(data []byte) (ProcUsage, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ProcUsage{}, fmt.Errorf("perf: proc stat: no comm field")
	}
	f := bytes.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return ProcUsage{}, fmt.Errorf("perf: proc stat: %d fields", len(f)+2)
	}
	num := func(field int) (int64, error) { return strconv.ParseInt(string(f[field-3]), 10, 64) }
	ut, err1 := num(14)
	st, err2 := num(15)
	rss, err3 := num(24)
	if err1 != nil || err2 != nil || err3 != nil {
		return ProcUsage{}, fmt.Errorf("perf: proc stat: bad numbers")
	}
	return ProcUsage{
		CPU: time.Duration(ut+st) * time.Second / clockTicks,
		RSS: rss * int64(os.Getpagesize()),
	}, nil
}

// sumProcs adds the usage of several processes (missing ones count 0).
func sumProcs(pids []int) ProcUsage {
	var u ProcUsage
	for _, pid := range pids {
		if p, err := ReadProc(pid); err == nil {
			u.CPU += p.CPU
			u.RSS += p.RSS
		}
	}
	return u
}

// peakRSS is a process's peak resident memory (VmHWM of /proc/PID/status),
// 0 when it cannot be read.
func peakRSS(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	return parsePeakRSS(data)
}

func parsePeakRSS(status []byte) int64 {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 2 && string(f[1]) == "kB" {
				kb, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
