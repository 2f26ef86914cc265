// Package queue is a durable, append-only FIFO of opaque records on disk:
// one queue per upstream, written by the forwarder when an upstream is slow
// or down and read back, in order, with at-least-once delivery.
//
// # Use
//
//	q, err := queue.Open(queue.Options{Dir: dir, Upstream: name, Metrics: m}) // m: queue.NewMetrics(reg), once
//	err = q.Append(batch)              // durable per Options.Fsync
//	rec, pos, err := q.Next(ctx)       // blocks; rec valid until the next Next
//	err = q.Ack(pos)                   // after the upstream accepted rec
//	err = q.Close()
//
// A record returned by Next and not acknowledged is returned again after the
// queue is reopened, or after Rewind. NextUnless is Next for a consumer that
// may still hold what it appended: a record this process appended lately is
// not read if the consumer says it holds it (at the Position AppendAt
// returned). Append is all or nothing; at MaxBytes it returns ErrFull
// (policy Block) or deletes the oldest segments (policy DropOldest). A full
// disk is reported as ErrFull too, with the partial write truncated.
//
// # Files
//
// The directory holds segment files named by a zero-padded sequence number
// (00000000000000000001.seg), a read position file ("position"), and a lock
// file ("lock") carrying a flock(2) and the pid of its holder. Appends go to
// the newest segment, which is replaced by a new one past
// Options.SegmentBytes and at the first Append after Open (a process never
// appends to a file another one wrote); segments read and acknowledged to
// their end are deleted.
//
// A segment starts with a 16-byte header: the magic "RWGQSEG\x00", a uint16
// format version (1), uint16 flags (0), and the CRC32C of those 12 bytes.
// Version 1 frames each record as a uint32 payload length, the CRC32C of the
// payload, the CRC32C of those 8 bytes, then the payload; all integers are
// little endian. The position file is the magic "RWGQPOS\x00", a uint16
// version (1), uint16 flags, the uint64 segment and uint64 offset of the
// next unacknowledged record, and a CRC32C; it is replaced atomically
// (write a temporary file, fsync, rename, fsync the directory). FORMAT.md, beside this file, is the full specification.
// Readers for every format version ever shipped stay in the code: the
// reader switches on the version of each segment.
//
// # Damage
//
// Open never fails because of file contents. A torn tail (a record cut by a
// crash, or trailing garbage) is truncated; a corrupt record in the middle
// is skipped by resynchronising on the next frame whose header and payload
// checksums match; a file with a foreign magic, a newer format version or a
// broken header is moved to Options.QuarantineDir; an unreadable position
// file makes reading start from the oldest segment (duplicates, not loss).
// Each repair is logged once, as a warning, and counted in
// gateway_queue_corrupt_bytes_total{kind}.
//
// # Durability
//
// A record is written with write(2) before Append returns, so a crash of the
// process loses no appended record. Under FsyncAlways the record is fsynced,
// and the read position persisted, before Append and Ack return: no crash
// loses an appended record or redelivers an acknowledged one. Under
// FsyncInterval (the default) both reach stable storage within
// Options.SyncInterval: a crash of the machine can lose the records appended
// in the last interval (cut off as a torn tail on Open), and any crash can
// redeliver those acknowledged in the last interval. Close persists
// everything.
//
// # Concurrency
//
// Append, Ack, Len and Close are safe for concurrent use; Next serves one
// consumer. The directory is locked by the queue: a second Open of it, from
// any process, fails at once with ErrLocked.
package queue
