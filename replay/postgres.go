package replay

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"tickrelay/wire"
)

// PostgresSource plays rows of the root's backup table (root/backup:
// epoch, seq, exch_send, root_recv, msg_type, symbol, body) of one epoch in
// seq order, paced by exch_send. Rows are streamed by one query, never
// loaded all at once.
type PostgresSource struct {
	conn  *pgx.Conn
	sql   string
	args  []any
	rows  pgx.Rows
	frame []byte
	total uint64
	first uint64
	epoch uint32
	table string
}

// NewPostgresSource connects to dsn and counts the selected rows of table
// ("" means tickrelay_items); the time bounds of sel apply to exch_send.
func NewPostgresSource(ctx context.Context, dsn, table string, sel Select) (*PostgresSource, error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	if table == "" {
		table = "tickrelay_items"
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("replay: postgres: %w", err)
	}
	ident := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	epoch := int64(sel.Epoch)
	if epoch == 0 {
		if err := conn.QueryRow(ctx, "SELECT coalesce(max(epoch), 0) FROM "+ident).Scan(&epoch); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("replay: postgres: newest epoch of %s: %w", table, err)
		}
	}
	where := " FROM " + ident + " WHERE epoch = $5 AND seq >= $1 AND seq <= $2 AND exch_send >= $3 AND exch_send <= $4"
	toSeq := min(sel.toSeq(), math.MaxInt64)
	s := &PostgresSource{conn: conn, table: table,
		sql:   "SELECT seq, exch_send, body" + where + " ORDER BY seq",
		args:  []any{int64(sel.FromSeq), int64(toSeq), sel.FromTime, sel.toTime(), epoch},
		frame: make([]byte, 0, wire.FeedLenSize+wire.MaxFeedBody)}
	var n, first int64
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(min(seq), 0)"+where, s.args...).Scan(&n, &first); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("replay: postgres: count rows of %s: %w", table, err)
	}
	s.total, s.first, s.epoch = uint64(n), uint64(first), uint32(epoch)
	return s, nil
}

// FirstSeq implements Source.
func (s *PostgresSource) FirstSeq() uint64 { return s.first }

// Epoch implements Source: every row is the selected epoch's.
func (s *PostgresSource) Epoch() uint32 { return s.epoch }

// FirstEpoch implements Source.
func (s *PostgresSource) FirstEpoch() uint32 { return s.epoch }

// Next implements Source.
func (s *PostgresSource) Next(ctx context.Context) (int64, []byte, error) {
	if s.rows == nil {
		rows, err := s.conn.Query(ctx, s.sql, s.args...)
		if err != nil {
			return 0, nil, fmt.Errorf("replay: postgres: query %s: %w", s.table, err)
		}
		s.rows = rows
	}
	if !s.rows.Next() {
		err := s.rows.Err()
		s.rows.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("replay: postgres: read %s: %w", s.table, err)
		}
		return 0, nil, io.EOF
	}
	v := s.rows.RawValues()
	if len(v) != 3 || len(v[0]) != 8 || len(v[1]) != 8 {
		return 0, nil, fmt.Errorf("replay: postgres: %s: unexpected row shape", s.table)
	}
	seq := binary.BigEndian.Uint64(v[0])
	exch := int64(binary.BigEndian.Uint64(v[1]))
	body := v[2]
	h, err := wire.ParseFeedBody(body)
	if err != nil {
		return 0, nil, fmt.Errorf("replay: postgres: %s row seq %d: bad body: %w", s.table, seq, err)
	}
	if h.Seq != seq {
		return 0, nil, fmt.Errorf("replay: postgres: %s row seq %d holds a body with seq %d", s.table, seq, h.Seq)
	}
	s.frame = binary.LittleEndian.AppendUint16(s.frame[:0], uint16(len(body)))
	s.frame = append(s.frame, body...)
	return exch, s.frame, nil
}

// Rewind implements Source.
func (s *PostgresSource) Rewind(context.Context) error {
	if s.rows != nil {
		s.rows.Close()
		s.rows = nil
	}
	return nil
}

// Total implements Source.
func (s *PostgresSource) Total() uint64 { return s.total }

// Close implements Source.
func (s *PostgresSource) Close() error {
	s.Rewind(context.Background())
	return s.conn.Close(context.Background())
}
