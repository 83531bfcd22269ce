package entitle

import (
	"strings"
	"testing"
)

const example = `# identity  token                 patterns
alice       k7Qm2-alice-2026      00001-00100 00700
desk-b      f00dfeed-b            *
carol       carol-token-1         5 3-4 200-300 250-400
`

func TestParse(t *testing.T) {
	tab, err := Parse(strings.NewReader(example), "ent.conf")
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Fatalf("%d entries", tab.Len())
	}
	a, ok := tab.Lookup([]byte("k7Qm2-alice-2026"))
	if !ok || a.Identity != "alice" || a.Line != 2 || a.Grant.Everything() {
		t.Fatalf("%+v %v", a, ok)
	}
	for code, want := range map[uint32]bool{0: false, 1: true, 100: true, 101: false, 700: true, 699: false, 701: false} {
		if a.Grant.Allows(code) != want {
			t.Errorf("alice %d: %v", code, !want)
		}
	}
	if b, _ := tab.Lookup([]byte("f00dfeed-b")); !b.Grant.Everything() || !b.Grant.AllowsSymbol([]byte("XYZ")) {
		t.Fatal("desk-b is not *")
	}
	c, _ := tab.Lookup([]byte("carol-token-1"))
	if got := c.Grant.ranges; len(got) != 2 || got[0] != (span{3, 5}) || got[1] != (span{200, 400}) {
		t.Fatalf("carol's ranges merged to %v", got)
	}
	if _, ok := tab.Lookup([]byte("k7Qm2-alice-2027")); ok {
		t.Fatal("a near token matched")
	}
	if !a.Grant.AllowsSymbol([]byte("00700")) || !a.Grant.AllowsSymbol([]byte("700")) || a.Grant.AllowsSymbol([]byte("ABC")) {
		t.Fatal("AllowsSymbol")
	}
	frames := "TR 1 00005 p=1\nTR 2 00701 p=1\nNP 3 00100 p=2\nbroken\n"
	if got := string(a.Grant.FilterFrames(nil, []byte(frames))); got != "TR 1 00005 p=1\nNP 3 00100 p=2\n" {
		t.Fatalf("filtered %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{"alice\n", "f.conf:1: want"},
		{"\n\nal!ce tokentoken 1\n", "f.conf:3: bad identity"},
		{"alice short 1\n", "f.conf:1: bad token"},
		{"alice tok\x01entoken 1\n", "f.conf:1: bad token"},
		{"alice " + strings.Repeat("t", 300) + " 1\n", "f.conf:1: bad token"},
		{"alice tokentoken 5-3\n", "f.conf:1: bad pattern"},
		{"alice tokentoken ABC\n", "f.conf:1: bad pattern"},
		{"alice tokentoken 99999999999\n", "f.conf:1: bad pattern"},
		{"a tokentoken 1\nb tokentoken 2\n", "f.conf:2: the same token as line 1"},
	} {
		_, err := Parse(strings.NewReader(c.file), "f.conf")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.file, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "tokentoken") {
			t.Errorf("%q: the error quotes the token: %v", c.file, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add("a tokentoken 1-2 3 *\n# x\n\n")
	f.Add("a tokentoken 4294967295-4294967295\n")
	f.Fuzz(func(t *testing.T, file string) {
		tab, err := Parse(strings.NewReader(file), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for _, e := range tab.entries {
			g := e.Grant
			for i := 1; i < len(g.ranges); i++ {
				if g.ranges[i].lo <= g.ranges[i-1].hi+1 {
					t.Fatalf("ranges not merged: %v", g.ranges)
				}
			}
			for _, s := range g.ranges {
				if !g.Allows(s.lo) || !g.Allows(s.hi) || s.lo > 0 && g.Allows(s.lo-1) && !g.all && !inAny(g, s.lo-1) {
					t.Fatalf("Allows disagrees with %v", g.ranges)
				}
			}
		}
	})
}

func inAny(g *Grant, c uint32) bool {
	for _, s := range g.ranges {
		if s.lo <= c && c <= s.hi {
			return true
		}
	}
	return false
}
