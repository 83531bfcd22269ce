package journal

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestControlRecords: records queued behind items commit with them,
// control_through names the last item whose records are in, they load in
// order after a reopen, a compaction keeps the keys counting up and marks
// its snapshot, and the backup watermark ranges over what is after it.
func TestControlRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if err := j.Append(seq, 1, body(seq)); err != nil {
			t.Fatal(err)
		}
		if seq%3 == 0 {
			if err := j.AppendControl(fmt.Appendf(nil, "after %d", seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := j.AppendControl([]byte("no item after it")); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var got []string
	through, n, err := j.LoadControl(func(rec []byte, snap bool) error {
		got = append(got, fmt.Sprintf("%s %v", rec, snap))
		return nil
	})
	want := []string{"after 3 false", "after 6 false", "after 9 false", "no item after it false"}
	if err != nil || through != 10 || n != 4 || !slices.Equal(got, want) {
		t.Fatalf("loaded %q through %d n %d %v", got, through, n, err)
	}
	if err := j.CompactControl([][]byte{[]byte("state")}, 10); err != nil {
		t.Fatal(err)
	}
	if err := j.AppendControl([]byte("later")); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := j.RangeControl(0, func(k uint64, rec []byte, snap bool) bool {
		keys = append(keys, fmt.Sprintf("%d %s %v", k, rec, snap))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"5 state true", "6 later false"}) {
		t.Fatalf("after compaction: %q", keys)
	}
	if err := j.SetControlBackedUp(5); err != nil || j.ControlBackedUp() != 5 {
		t.Fatal(err)
	}
	keys = keys[:0]
	j.RangeControl(j.ControlBackedUp(), func(k uint64, rec []byte, _ bool) bool { keys = append(keys, string(rec)); return true })
	if !slices.Equal(keys, []string{"later"}) {
		t.Fatalf("after the watermark: %q", keys)
	}
}
