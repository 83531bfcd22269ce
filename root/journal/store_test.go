package journal_test

import (
	"tickrelay/root"
	"tickrelay/root/journal"
)

// The journal is the root's Store.
var _ root.Store = (*journal.Journal)(nil)
