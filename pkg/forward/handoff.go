package forward

import (
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/rwgateway/gateway/pkg/queue"
)

// maxHandoffBytes bounds what a handoff holds for records its reader has
// not reached yet; past it, records are decoded from disk.
const maxHandoffBytes = 16 << 20

// handoff passes the items of a disk queue record from Enqueue to the
// reader, which would decode them again (a snappy decode and a scan of every
// series: a third of the CPU per sample). The record is still written, read
// and acknowledged, so durability does not change; a record without an
// entry (written before a restart, or read before its entry was put) is
// decoded. Entries are keyed by queue position: one put after the reader
// passed it is refused, and taking a position discards the entries before
// it (records drop_oldest dropped unread).
type handoff struct {
	mu      sync.Mutex
	read    queue.Position // the last position the reader took
	entries []handoffEntry // usually zero or one
	bytes   int

	hits, misses int // records taken and decoded, for tests
}

type handoffEntry struct {
	pos      queue.Position
	items    []item
	appended time.Time
	bytes    int
}

// wants reports whether an entry of n bytes would be kept now.
func (h *handoff) wants(n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes+n <= maxHandoffBytes
}

// put offers the items of the record at pos, appended at appended, which
// hold n bytes; it reports whether it kept them.
func (h *handoff) put(pos queue.Position, items []item, appended time.Time, n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.read.Before(pos) || h.bytes+n > maxHandoffBytes {
		return false
	}
	h.entries = append(h.entries, handoffEntry{pos: pos, items: items, appended: appended, bytes: n})
	h.bytes += n
	return true
}

// take returns the items put for pos, and forgets every entry up to pos.
func (h *handoff) take(pos queue.Position) ([]item, time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.read.Before(pos) {
		h.read = pos
	}
	var found handoffEntry
	ok := false
	h.entries = slices.DeleteFunc(h.entries, func(e handoffEntry) bool {
		if e.pos.Equal(pos) {
			found, ok = e, true
		}
		if pos.Before(e.pos) {
			return false
		}
		h.bytes -= e.bytes
		return true
	})
	if ok {
		h.hits++
	} else {
		h.misses++
	}
	return found.items, found.appended, ok
}

// handoffBytes is the memory the items of an entry hold.
func handoffBytes(items []item) int {
	n := len(items) * int(unsafe.Sizeof(item{}))
	for i := range items {
		n += len(items[i].raw) + 8*len(items[i].hashes)
		if w := items[i].whole; w != nil {
			n += len(w.wire)
		}
	}
	return n
}

// behind reports whether the handoff holds more than half its maximum.
func (h *handoff) behind() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes > maxHandoffBytes/2
}
