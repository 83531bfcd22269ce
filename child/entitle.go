package child

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"tickrelay/entitle"
)

// entitlements holds the child's table (package entitle) and reloads it:
// on Reload (SIGHUP) and when the file changes. A file that does not parse
// or has gone leaves the table in force, and the error names file and
// line; nobody is dropped by a reload, only the symbols it revokes.
type entitlements struct {
	path  string
	table atomic.Pointer[entitle.Table]
	mu    sync.Mutex // one reload at a time
	seen  fileStamp  // of the file last loaded
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(fi os.FileInfo) fileStamp { return fileStamp{fi.ModTime(), fi.Size()} }

// load reads the table at start: an error stops the child.
func (e *entitlements) load(path string) error {
	e.path = path
	if path == "" {
		return nil
	}
	t, st, err := readTable(path)
	if err != nil {
		return fmt.Errorf("child: entitlements: %w", err)
	}
	e.table.Store(t)
	e.seen = st
	return nil
}

func readTable(path string) (*entitle.Table, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, err
	}
	t, err := entitle.Parse(f, path)
	return t, stampOf(fi), err
}

// Reload reads the entitlements file again and applies it to every client
// (session.Loop.Reentitle); on error the table in force stays.
func (ch *Child) Reload() error {
	e := &ch.ents
	if e.path == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, st, err := readTable(e.path)
	if err != nil {
		ch.metrics.EntitlementReloads.WithLabelValues("error").Inc()
		ch.log.Error("entitlements not reloaded; the table in force stays", "err", err)
		return err
	}
	e.seen = st
	e.table.Store(t)
	ch.metrics.EntitlementReloads.WithLabelValues("ok").Inc()
	ch.metrics.EntitlementTokens.Set(float64(t.Len()))
	ch.log.Info("entitlements reloaded", "file", e.path, "tokens", t.Len())
	var wg sync.WaitGroup
	for _, l := range *ch.srv.loops.Load() {
		wg.Add(1)
		if l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			l.sess.Reentitle()
			return nil
		})) != nil {
			wg.Done()
		}
	}
	wg.Wait()
	return nil
}

// watchEntitlements reloads the file when its size or time changes,
// checking every period until ctx ends.
func (ch *Child) watchEntitlements(ctx context.Context, period time.Duration) {
	e := &ch.ents
	if e.path == "" {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	gone := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(e.path)
		if err != nil {
			if !gone {
				ch.log.Error("entitlements file unreadable; the table in force stays", "err", err)
			}
			gone = true
			continue
		}
		gone = false
		e.mu.Lock()
		changed := stampOf(fi) != e.seen
		e.mu.Unlock()
		if changed {
			ch.Reload()
		}
	}
}
