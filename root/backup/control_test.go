package backup_test

import (
	"testing"

	"tickrelay/alert"
	"tickrelay/control"
	"tickrelay/internal/pgtest"
)

// TestControlBackup: the journal's alert records reach <table>_control
// once each, with their kind, identity, id and place; a lost watermark
// re-sends nothing twice; a compaction's snapshot rows come after, marked.
func TestControlBackup(t *testing.T) {
	dsn := pgtest.Fresh(t, pgtest.DSN(t))
	j := newJournal(t, 100)
	rec := func(kind control.Kind, id string, after uint64) []byte {
		op := control.Op{Kind: kind, Alert: alert.Def{Owner: "bob", ID: id}}
		if kind == control.KindAlert {
			op.Alert.Sym, op.Alert.Value, op.Armed = 700, 1000, true
		}
		b, err := control.AppendRecord(nil, control.Record{Era: 1, Serial: 1, After: after, Op: op})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, r := range [][]byte{rec(control.KindAlert, "a1", 10), rec(control.KindAlert, "a2", 11), rec(control.KindUnalert, "a1", 50)} {
		if err := j.AppendControl(r); err != nil {
			t.Fatal(err, i)
		}
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	b := newBackup(t, dsn, j, nil)
	ctx := t.Context()
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	count := func() (n, snaps int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE snapshot) FROM tickrelay_items_control`).Scan(&n, &snaps); err != nil {
			t.Fatal(err)
		}
		return n, snaps
	}
	if n, _ := count(); n != 3 || j.ControlBackedUp() != 3 {
		t.Fatalf("%d rows, watermark %d", n, j.ControlBackedUp())
	}
	var kind int16
	var owner, id string
	var after int64
	if err := conn.QueryRow(ctx, `SELECT kind, owner, alert_id, after_pos FROM tickrelay_items_control WHERE key = 3`).Scan(&kind, &owner, &id, &after); err != nil ||
		kind != int16(control.KindUnalert) || owner != "bob" || id != "a1" || after != 50 {
		t.Fatalf("row 3: %d %q %q %d %v", kind, owner, id, after, err)
	}
	if err := j.SetControlBackedUp(0); err != nil {
		t.Fatal(err)
	}
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := count(); n != 3 {
		t.Fatalf("%d rows after a re-send", n)
	}
	if err := j.CompactControl([][]byte{rec(control.KindAlert, "a2", 11)}, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n, snaps := count(); n != 4 || snaps != 1 {
		t.Fatalf("after a compaction: %d rows, %d snapshot", n, snaps)
	}
}
