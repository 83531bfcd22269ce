// Package frames is the child's parse-once state: Core turns each relay item
// into its text frame once, into a Batch the event loops share, and keeps
// the frame history (RESUME) and each symbol's last values (SUB images).
// It does no I/O and reads no clock (stamps come in as arguments). Shared
// is the Core guarded for one writer (the relay) and many readers (loops).
package frames
