package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnits: where systemd-analyze exists, the units in
// scripts/systemd pass `verify` (ExecStart pointed at a built binary) and
// score 3.0 or lower on `security --offline=true`.
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze here")
	}
	bin := tickrelayBin(t)
	dir := t.TempDir()
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for unit, as := range map[string]string{"tickrelay-root.service": "tickrelay-root.service", "tickrelay-child@.service": "tickrelay-child@a.service"} {
		text, err := os.ReadFile(filepath.Join("..", "..", "scripts", "systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, as)
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/tickrelay", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: systemd-analyze verify: %v\n%s", unit, err, out)
		}
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", path).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s: systemd-analyze security: %v\n%s", unit, err, out)
		}
		if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 3.0 {
			t.Errorf("%s: exposure %.1f > 3.0", unit, score)
		} else {
			t.Logf("%s: exposure %.1f", unit, score)
		}
	}
}
