package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithParam(t *testing.T) {
	if got := WithParam("postgres://u@h:1/db?sslmode=disable", "search_path", "s1"); got != "postgres://u@h:1/db?search_path=s1&sslmode=disable" {
		t.Fatalf("url: %s", got)
	}
	if got := WithParam("host=h dbname=db", "search_path", "s1"); got != "host=h dbname=db search_path='s1'" {
		t.Fatalf("kv: %s", got)
	}
}

func TestFreshSchemas(t *testing.T) {
	dsn := DSN(t)
	var schemas []string
	t.Run("use", func(t *testing.T) { schemas = useTwo(t, dsn) })
	// The subtest's cleanup dropped both schemas.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)", schemas).Scan(&n); err != nil || n != 0 || len(schemas) != 2 {
		t.Fatalf("schemas %v: %d left after cleanup (%v)", schemas, n, err)
	}
}

func useTwo(t *testing.T, dsn string) []string {
	a, b := Fresh(t, dsn), Fresh(t, dsn)
	if a == b {
		t.Fatal("two Fresh calls gave the same DSN")
	}
	ctx := t.Context()
	var schemas []string
	for _, d := range []string{a, b} {
		conn, err := pgx.Connect(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE x (v int)"); err != nil { // same name, no collision
			t.Fatal(err)
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&s); err != nil || !strings.HasPrefix(s, "t_") {
			t.Fatalf("current_schema %q, %v", s, err)
		}
		schemas = append(schemas, s)
		conn.Close(context.Background())
	}
	return schemas
}
