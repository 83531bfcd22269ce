package perf

import (
	"os/exec"
	"strconv"
)

// The load (the harness's subscriber connections) and the systems under
// test share this host; in a real deployment they run on different machines. So
// the servers and the feed sources (the exchange simulator, the peers'
// publisher) run at a higher scheduling priority (nice ServerNice) than the
// harness: a burst of client reads does not preempt the system it measures.
// Every system gets the same treatment. Without the privilege to lower a
// nice value (CAP_SYS_NICE) everything runs at the same priority, as before.

// niced wraps cmd in `nice -n n` (n < 0 raises its priority); n == 0 or no
// nice(1) on PATH leaves cmd alone.
func niced(cmd *exec.Cmd, n int) *exec.Cmd {
	if n == 0 {
		return cmd
	}
	path, err := exec.LookPath("nice")
	if err != nil {
		return cmd
	}
	cmd.Args = append([]string{"nice", "-n", strconv.Itoa(n), cmd.Path}, cmd.Args[1:]...)
	cmd.Path = path
	return cmd
}
