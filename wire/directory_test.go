package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAnnounce(t *testing.T) {
	c := ChildInfo{Name: "child-a", Addr: "10.0.0.5:9200", State: ChildDraining, Load: ChildLoad{Clients: 3, Subs: 9, Rate: 1 << 31, Backlog: 7}}
	frame, err := AppendAnnounce(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	typ, p, n, err := NextRelayFrame(frame)
	if err != nil || typ != RelayAnnounce || n != len(frame) {
		t.Fatalf("%q %d %v", typ, n, err)
	}
	if got, err := ParseAnnounce(p); err != nil || got != c {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []ChildInfo{{Addr: "x"}, {Name: "x"}, {Name: strings.Repeat("n", MaxChildName+1), Addr: "x"}, {Name: "x", Addr: "y", State: 9}} {
		if _, err := AppendAnnounce(nil, bad); err == nil {
			t.Fatalf("%+v encoded", bad)
		}
	}
	// Garbage: a name longer than the payload, a bad state.
	if _, err := ParseAnnounce(append(make([]byte, 17), 200, 'a')); !errors.Is(err, ErrTruncated) {
		t.Fatalf("long name: %v", err)
	}
	if _, err := ParseAnnounce(append([]byte{7}, append(make([]byte, 16), 1, 'a', 'b')...)); !errors.Is(err, ErrSyntax) {
		t.Fatalf("bad state: %v", err)
	}
}

func TestDirectory(t *testing.T) {
	kids := []ChildInfo{{Name: "a", Addr: "127.0.0.1:1", Load: ChildLoad{Clients: 1}}, {Name: "b", Addr: "127.0.0.1:2", State: ChildDraining}}
	frame, err := AppendDirectory(nil, 42, kids)
	if err != nil {
		t.Fatal(err)
	}
	typ, p, _, err := NextRelayFrame(frame)
	if err != nil || typ != RelayDirectory {
		t.Fatalf("%q %v", typ, err)
	}
	epoch, got, err := ParseDirectory(p)
	if err != nil || epoch != 42 || !reflect.DeepEqual(got, kids) {
		t.Fatalf("%d %+v %v", epoch, got, err)
	}
	if _, got, err := ParseDirectory(p[:directoryFixed]); err == nil || got != nil {
		t.Fatal("a directory cut short parsed")
	}
	for cut := directoryFixed; cut < len(p); cut++ {
		if _, _, err := ParseDirectory(p[:cut]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	if _, _, err := ParseDirectory(append(p, 0)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("trailing byte: %v", err)
	}
	empty, _ := AppendDirectory(nil, 1, nil)
	if _, p, _, _ := NextRelayFrame(empty); true {
		if e, got, err := ParseDirectory(p); err != nil || e != 1 || len(got) != 0 {
			t.Fatalf("empty: %d %v %v", e, got, err)
		}
	}
}

func TestChildrenLine(t *testing.T) {
	kids := []ChildInfo{{Name: "a", Addr: "127.0.0.1:9200", Load: ChildLoad{1, 2, 3, 4}}, {Name: "b", Addr: "[::1]:9201", State: ChildDraining}}
	line := AppendChildrenLine(nil, 9, kids)
	if string(line) != "CHILDREN 9 a=127.0.0.1:9200,up,1,2,3,4 b=[::1]:9201,draining,0,0,0,0\n" || KindOf(line) != LineChildren {
		t.Fatalf("%q", line)
	}
	if e, got, err := ParseChildrenLine(line); err != nil || e != 9 || !reflect.DeepEqual(got, kids) {
		t.Fatalf("%d %+v %v", e, got, err)
	}
	for _, bad := range []string{"CHILDREN", "CHILDREN x", "CHILDREN 1 a", "CHILDREN 1 a=h,up,1,2,3", "CHILDREN 1 a=h,gone,1,2,3,4", "CHILDREN 1 =h,up,1,2,3,4", "CHILDREN 1 a=h,up,1,2,3,4294967296"} {
		if _, _, err := ParseChildrenLine([]byte(bad)); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestDrainAndBusyLines(t *testing.T) {
	line := AppendDrainLine(nil, 10*time.Second)
	if string(line) != "INFO DRAIN 10000\n" || KindOf(line[:len(line)-1]) != LineInfo {
		t.Fatalf("%q", line)
	}
	if g, err := ParseDrainLine(line); err != nil || g != 10*time.Second {
		t.Fatal(g, err)
	}
	busy := AppendBusy(nil, 1500*time.Millisecond, "127.0.0.1:9300")
	if string(busy) != "ERR BUSY retry=1500 try=127.0.0.1:9300\n" {
		t.Fatalf("%q", busy)
	}
	if r, try, err := ParseBusy(busy); err != nil || r != 1500*time.Millisecond || try != "127.0.0.1:9300" {
		t.Fatal(r, try, err)
	}
	for _, bad := range []string{"INFO DRAIN", "INFO DRAIN x", "INFO NOPE 5", "ERR BUSY", "ERR BUSY try=a", "ERR SLOW retry=5", "ERR BUSY retry=-1"} {
		_, err1 := ParseDrainLine([]byte(bad))
		_, _, err2 := ParseBusy([]byte(bad))
		if err1 == nil || err2 == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
