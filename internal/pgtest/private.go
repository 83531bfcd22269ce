package pgtest

import (
	"bufio"
	"bytes"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Server is a PostgreSQL of a test's own (started with scripts/testpg.sh),
// for tests that stop and start it: the shared server must never be
// stopped under other packages' tests.
type Server struct {
	t      testing.TB
	DSN    string
	Dir    string // the instance's dir (data, log)
	port   string
	bindir string
}

// Private starts a Server that is removed when the test ends. Without the
// PostgreSQL binaries the test is skipped, or fails when CI=true.
func Private(t testing.TB) *Server {
	t.Helper()
	script, err := testpgScript()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), script, "start")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testpg.sh start: %v: %s", err, errOut.String())
		}
		t.Skipf("no private PostgreSQL (testpg.sh start: %v: %s)", err, strings.TrimSpace(errOut.String()))
	}
	s := &Server{t: t}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		v = strings.Trim(v, "'")
		switch k {
		case EnvDSN:
			s.DSN = v
		case "TICKRELAY_TEST_PGDIR":
			s.Dir = v
		}
	}
	if s.DSN == "" || s.Dir == "" {
		t.Fatalf("testpg.sh start printed %q", out.String())
	}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", s.Dir).CombinedOutput(); err != nil {
			t.Errorf("testpg.sh stop: %v: %s", err, out)
		}
	})
	u, err := url.Parse(s.DSN)
	if err != nil || u.Port() == "" {
		t.Fatalf("private DSN %q has no port", s.DSN)
	}
	s.port = u.Port()
	bindir, err := os.ReadFile(filepath.Join(s.Dir, ".tickrelay-testpg"))
	if err != nil {
		t.Fatal(err)
	}
	s.bindir = strings.TrimSpace(string(bindir))
	return s
}

// Stop stops the server with pg_ctl in mode ("fast", "immediate").
func (s *Server) Stop(mode string) { s.pgctl("-m", mode, "-w", "stop") }

// Start starts the stopped server again on its port.
func (s *Server) Start() {
	s.pgctl("-l", filepath.Join(s.Dir, "postgres.log"), "-o", "-p "+s.port, "-w", "-t", "60", "start")
}

func (s *Server) pgctl(args ...string) {
	s.t.Helper()
	argv := append([]string{filepath.Join(s.bindir, "pg_ctl"), "-D", filepath.Join(s.Dir, "data")}, args...)
	if os.Geteuid() == 0 { // pg_ctl refuses root; testpg.sh runs it as postgres
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	c := exec.CommandContext(s.t.Context(), argv[0], argv[1:]...)
	c.Dir = s.Dir
	if out, err := c.CombinedOutput(); err != nil {
		s.t.Fatalf("pg_ctl %v: %v: %s", args, err, out)
	}
}

// testpgScript finds scripts/testpg.sh above the test's working directory.
func testpgScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "testpg.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("pgtest: no go.mod above the working directory")
		}
		dir = parent
	}
}
