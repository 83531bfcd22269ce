package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tickrelay/internal/gnetprocs"
	"tickrelay/root"
	"tickrelay/root/backup"
	"tickrelay/root/journal"
)

func init() {
	commands["root"] = command{"root daemon: exchange session, ring, journal, Postgres backup, relay to children", runRoot}
}

// envPG is the environment variable read when -postgres is not given (it
// keeps the password out of the process list).
const envPG = "TICKRELAY_PG"

// envPassword holds the exchange password where -password is not given.
const envPassword = "TICKRELAY_EXCHANGE_PASSWORD"

// flagSet reports whether flag name was given (command line or config).
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// defaultJournal is where the journal lives unless -journal says otherwise:
// under systemd's StateDirectory= ($STATE_DIRECTORY, /var/lib/tickrelay in
// our unit) when set, else tickrelay-root.journal in the working directory.
// The journal is the embedded default store: a root always has durable
// history unless -journal "" turns it off.
func defaultJournal() string {
	if dir := os.Getenv("STATE_DIRECTORY"); dir != "" {
		// systemd may pass several dirs separated by ':'; the first is ours.
		dir, _, _ = strings.Cut(dir, ":")
		return filepath.Join(dir, "root.journal")
	}
	return "tickrelay-root.journal"
}

// defaultRetainBytes bounds the journal by default (the journal is on by
// default, so an unbounded one would fill the disk): 8 GiB of items.
const defaultRetainBytes = 8 << 30

// rootFlags are the durability flags of `tickrelay root`.
type rootFlags struct {
	journal      string
	sync         string
	commitEvery  time.Duration
	commitItems  int
	retainAge    time.Duration
	retainBytes  int64
	retainEpochs int
	postgres     string
	backupEvery  time.Duration
	backupTable  string
}

func addDurabilityFlags(fs *flag.FlagSet) *rootFlags {
	bdef := backup.DefaultConfig()
	f := &rootFlags{}
	fs.StringVar(&f.journal, "journal", defaultJournal(),
		"bbolt journal file: durable history beneath the ring, restart recovery, catch-up of old children, backup source; "+
			"under systemd $STATE_DIRECTORY/root.journal; \"\" = no journal, ring only")
	fs.StringVar(&f.sync, "sync", journal.SyncAlways,
		"journal sync policy: always (fsync every group commit: survives a power cut) or none (OS page cache: survives a process crash only)")
	fs.DurationVar(&f.commitEvery, "commit-every", 5*time.Millisecond, "longest an item waits for its journal group commit")
	fs.IntVar(&f.commitItems, "commit-items", 4096, "pending items that trigger a journal group commit at once")
	fs.DurationVar(&f.retainAge, "retain-age", 0, "delete journal items older than this (0 = keep; with -postgres, never before they are backed up)")
	sizeVar(fs, &f.retainBytes, "retain-bytes", defaultRetainBytes, "delete the oldest journal items while they total more bytes than this "+
		"(8 GiB is ~130M items, 11 min at 200k/s; 0 = no limit; with -postgres, never before they are backed up)")
	fs.IntVar(&f.retainEpochs, "retain-epochs", 0, "keep the journal items of the newest N epochs (trading sessions) only (0 = no limit; with -postgres, never before they are backed up)")
	fs.StringVar(&f.postgres, "postgres", "", "PostgreSQL DSN for the backup (default $"+envPG+"; empty = no backup, the journal is the only durable copy)")
	fs.DurationVar(&f.backupEvery, "backup-every", bdef.Every, "time between backup rounds (each copies everything after the backed-up watermark)")
	fs.StringVar(&f.backupTable, "backup-table", bdef.Table, "backup table, [schema.]name (created if missing)")
	return f
}

func (f *rootFlags) validate() error {
	if f.postgres == "" {
		f.postgres = os.Getenv(envPG)
	}
	switch {
	case f.sync != journal.SyncAlways && f.sync != journal.SyncNone:
		return fmt.Errorf("-sync %q: want %q or %q", f.sync, journal.SyncAlways, journal.SyncNone)
	case f.commitEvery <= 0:
		return fmt.Errorf("-commit-every %v: must be > 0", f.commitEvery)
	case f.commitItems <= 0:
		return fmt.Errorf("-commit-items %d: must be > 0", f.commitItems)
	case f.retainAge < 0:
		return fmt.Errorf("-retain-age %v: must be >= 0", f.retainAge)
	case f.retainBytes < 0:
		return fmt.Errorf("-retain-bytes %d: must be >= 0", f.retainBytes)
	case f.retainEpochs < 0:
		return fmt.Errorf("-retain-epochs %d: must be >= 0", f.retainEpochs)
	case f.postgres != "" && f.journal == "":
		return errors.New("-postgres needs a journal (the backup copies the journal): set -journal")
	}
	return nil
}

func runRoot(ctx context.Context, args []string) error {
	def := root.DefaultConfig()
	fs := newFlags("root")
	exchange := fs.String("exchange", def.ExchangeAddr, "exchange feed address host:port")
	user := fs.String("user", def.User, "exchange logon user (<= 16 bytes)")
	password := fs.String("password", def.Password, "exchange logon password (<= 16 bytes); $"+envPassword+" when this flag is not given (keeps it out of configs and the process list)")
	addr := fs.String("addr", def.Addr, "relay listen address for children")
	ringSize := fs.Int("ring-size", def.RingSize, "items kept in memory (power of two); older ones are served from the journal")
	loops := fs.Int("loops", def.Loops, "gnet event loops for children (0 = one per CPU)")
	admin := fs.String("admin", "127.0.0.1:9101", "admin address: /metrics, /healthz (empty = off)")
	linger := fs.Duration("group-linger", def.GroupLinger, "how long a queue-group member with an identity (HELLO or token) keeps its place after its connection ends: back on any child meanwhile, it keeps its symbols (0: it leaves at once)")
	announce := fs.Duration("announce-every", def.AnnounceEvery, "how often children announce themselves (their -announce-every): one silent for three is gone from the directory")
	df := addDurabilityFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if env := os.Getenv(envPassword); env != "" && !flagSet(fs, "password") {
		*password = env
	}
	log, err := newLogger(fs)
	if err != nil {
		return err
	}
	if err := df.validate(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	cfg := def
	cfg.ExchangeAddr, cfg.User, cfg.Password, cfg.Addr = *exchange, *user, *password, *addr
	cfg.RingSize, cfg.Loops, cfg.AnnounceEvery, cfg.GroupLinger = *ringSize, *loops, *announce, *linger
	cfg.Logger, cfg.Registerer = log, reg
	if err := cfg.Validate(); err != nil {
		return err
	}
	gnetprocs.Reserve(cfg.RelayLoops())

	// The journal opens before anything listens: a corrupt, truncated or
	// holed file stops the root here, with the journal's error naming it.
	var j *journal.Journal
	if df.journal != "" {
		j, err = journal.Open(df.journal, journal.Options{
			SyncPolicy:    df.sync,
			CommitEvery:   df.commitEvery,
			CommitItems:   df.commitItems,
			RetainAge:     df.retainAge,
			RetainBytes:   df.retainBytes,
			RetainEpochs:  df.retainEpochs,
			RequireBackup: df.postgres != "",
			Logger:        log,
			Registerer:    reg,
		})
		if err != nil {
			return err
		}
		cfg.Store = j
	} else {
		log.Warn("no journal (-journal \"\"): history is the ring only; a restart starts from the exchange's live edge")
	}
	err = runRootWith(ctx, cfg, j, df, *admin, reg, log)
	if j != nil {
		if cerr := j.Close(); cerr != nil {
			log.Error("journal close", "err", cerr)
			err = errors.Join(err, cerr)
		}
	}
	return err
}

// runRootWith runs the root and, with a DSN, the backup beside it. Shutdown
// order: ctx ends -> root.Run returns (session stopped, children drained, no
// more appends) -> the backup's final round -> the caller closes the journal
// (last group commit).
func runRootWith(ctx context.Context, cfg root.Config, j *journal.Journal, df *rootFlags, admin string,
	reg *prometheus.Registry, log *slog.Logger) error {
	r, err := root.New(cfg)
	if err != nil {
		return err
	}
	var b *backup.Backup
	if df.postgres != "" {
		bcfg := backup.DefaultConfig()
		bcfg.DSN, bcfg.Every, bcfg.Table = df.postgres, df.backupEvery, df.backupTable
		bcfg.Source, bcfg.Logger, bcfg.Registerer = j, log, reg
		if b, err = backup.New(bcfg); err != nil {
			return err
		}
		log.Info("backup to PostgreSQL", "table", df.backupTable, "every", df.backupEvery, "backed_up", j.BackedUp())
	} else if j != nil {
		log.Info("no PostgreSQL backup (-postgres/$" + envPG + " unset): the journal is the only durable copy")
	}
	if err := serveAdmin(ctx, admin, reg, log); err != nil {
		if b != nil {
			b.Close()
		}
		return err
	}

	// The backup runs on its own context, cancelled only once the root has
	// stopped appending, so that its final round covers everything.
	bctx, stopBackup := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackup()
	bdone := make(chan struct{})
	if b != nil {
		go func() {
			defer close(bdone)
			_ = b.Run(bctx) // failures are logged; the journal keeps the items
		}()
	} else {
		close(bdone)
	}
	notifyRoot(ctx, r)
	err = r.Run(ctx)
	if b != nil {
		// The final round copies committed items only: commit the rest first.
		if ferr := j.Flush(); ferr != nil {
			log.Error("journal flush before the final backup round", "err", ferr)
		}
		log.Info("root stopped; final backup round", "head", r.Head(), "durable_seq", j.DurableSeq())
	}
	stopBackup()
	<-bdone
	return err
}
