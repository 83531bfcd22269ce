package backup

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"tickrelay/control"
)

// The journal also holds the alert engine's records (package control);
// each round copies the committed ones after the control watermark into
// <table>_control, one row a record:
//
//	key       bigint PRIMARY KEY  the journal's key (counting up, across compactions)
//	kind      smallint            control.Kind (3 alert, 4 unalert, 5 fired, 6 rearm)
//	owner     text                the alert's identity
//	alert_id  text                its id
//	after_pos bigint              the record's place (wire.Pos: epoch << 32 | seq)
//	snapshot  boolean             one of a journal compaction's snapshot records
//	rec       bytea               the record (control.AppendRecord)
//
// Folding the rows in key order, from the last snapshot on, rebuilds the
// standing alerts and the last fires. A re-sent row is dropped (ON
// CONFLICT (key) DO NOTHING).

// controlSource is a Source that journals control records (the journal).
type controlSource interface {
	RangeControl(after uint64, fn func(key uint64, rec []byte, snapshot bool) bool) error
	ControlBackedUp() uint64
	SetControlBackedUp(key uint64) error
}

// controlChunk is how many records one INSERT takes.
const controlChunk = 4096

func (b *Backup) controlTable() string {
	return pgx.Identifier(strings.Split(b.cfg.Table+"_control", ".")).Sanitize()
}

// prepareControl creates the control table if missing.
func (b *Backup) prepareControl(ctx context.Context, conn *pgx.Conn) error {
	if _, ok := b.cfg.Source.(controlSource); !ok {
		return nil
	}
	_, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+b.controlTable()+` (
		key bigint PRIMARY KEY,
		kind smallint NOT NULL,
		owner text NOT NULL,
		alert_id text NOT NULL,
		after_pos bigint NOT NULL,
		snapshot boolean NOT NULL,
		rec bytea NOT NULL)`)
	if err != nil {
		return fmt.Errorf("create %s_control: %w", b.cfg.Table, err)
	}
	return nil
}

// controlRound copies the control records after the watermark; it
// returns how many.
func (b *Backup) controlRound(ctx context.Context) (int, error) {
	src, ok := b.cfg.Source.(controlSource)
	if !ok {
		return 0, nil
	}
	total := 0
	for {
		var keys, afters []int64
		var kinds []int16
		var owners, ids []string
		var snaps []bool
		var recs [][]byte
		var bad error
		err := src.RangeControl(src.ControlBackedUp(), func(key uint64, rec []byte, snapshot bool) bool {
			r, err := control.ParseRecord(rec)
			if err != nil {
				bad = fmt.Errorf("backup: control record %d: %w", key, err)
				return false
			}
			keys, afters = append(keys, int64(key)), append(afters, int64(r.After))
			kinds, owners, ids = append(kinds, int16(r.Op.Kind)), append(owners, r.Op.Alert.Owner), append(ids, r.Op.Alert.ID)
			snaps, recs = append(snaps, snapshot), append(recs, append([]byte(nil), rec...))
			return len(keys) < controlChunk
		})
		if err == nil {
			err = bad
		}
		if err != nil || len(keys) == 0 {
			return total, err
		}
		if err := b.connect(ctx); err != nil {
			return total, err
		}
		_, err = b.conns[0].Exec(ctx, `INSERT INTO `+b.controlTable()+` (key, kind, owner, alert_id, after_pos, snapshot, rec)
			SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], $6::boolean[], $7::bytea[])
			ON CONFLICT (key) DO NOTHING`, keys, kinds, owners, ids, afters, snaps, recs)
		if err != nil {
			return total, fmt.Errorf("backup: control records %d..%d: %w", keys[0], keys[len(keys)-1], err)
		}
		if err := src.SetControlBackedUp(uint64(keys[len(keys)-1])); err != nil {
			return total, fmt.Errorf("backup: control records up to %d copied but the watermark was not saved: %w", keys[len(keys)-1], err)
		}
		total += len(keys)
	}
}
