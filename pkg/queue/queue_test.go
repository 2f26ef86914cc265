package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const testUpstream = "up"

// Test records have a fixed size so that segment layouts are predictable:
// with recordSize payloads a frame is frameBytes, and testSegmentBytes holds
// exactly three of them.
const (
	recordSize       = 100
	frameBytes       = frameHeaderSizeV1 + recordSize
	testSegmentBytes = segmentHeaderSize + 3*frameBytes
)

func record(i int) []byte {
	b := fmt.Appendf(nil, "record-%06d-", i)
	for len(b) < recordSize {
		b = append(b, byte('a'+i%26))
	}
	return b
}

func testOptions(t testing.TB) Options {
	return Options{
		Dir:          filepath.Join(t.TempDir(), "queue"),
		Upstream:     testUpstream,
		MaxBytes:     1 << 20,
		SegmentBytes: testSegmentBytes,
		Metrics:      NewMetrics(prometheus.NewPedanticRegistry()),
	}
}

func openQueue(t testing.TB, opts Options) *Queue {
	t.Helper()
	q, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q.Close()) })
	return q
}

func appendRecords(t testing.TB, q *Queue, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		require.NoError(t, q.Append(record(i)))
	}
}

// drain returns copies of the records available now, without waiting, and
// the position of the last one.
func drain(t testing.TB, q *Queue) ([]string, Position) {
	t.Helper()
	return drainUnless(t, q, nil)
}

// next returns the next record, which must be available.
func next(t testing.TB, q *Queue) (string, Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, pos, err := q.Next(ctx)
	require.NoError(t, err)
	return string(rec), pos
}

func want(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, string(record(i)))
	}
	return s
}

// segmentFiles returns the sequence numbers of the segments in dir.
func segmentFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var seqs []uint64
	for _, e := range entries {
		if seq, ok := parseSegmentName(e.Name()); ok {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

func TestRoundTrip(t *testing.T) {
	opts := testOptions(t)
	q, err := Open(opts)
	require.NoError(t, err)

	appendRecords(t, q, 0, 10)
	var batch [][]byte
	for i := 10; i < 30; i++ {
		batch = append(batch, record(i))
	}
	require.NoError(t, q.Append(batch...))
	records, bytes := q.Len()
	require.Equal(t, int64(30), records)
	require.Greater(t, len(segmentFiles(t, opts.Dir)), 3, "records span several segments")

	got, _ := drain(t, q)
	require.Equal(t, want(0, 30), got)
	require.NoError(t, q.Close())
	require.Equal(t, float64(bytes), testutil.ToFloat64(opts.Metrics.WrittenBytes.WithLabelValues(testUpstream)))
	require.Equal(t, float64(30*frameBytes), testutil.ToFloat64(opts.Metrics.ReadBytes.WithLabelValues(testUpstream)))

	// Nothing was acknowledged: everything comes back, and appends continue.
	q = openQueue(t, opts)
	records, _ = q.Len()
	require.Equal(t, int64(30), records)
	appendRecords(t, q, 30, 35)
	got, _ = drain(t, q)
	require.Equal(t, want(0, 35), got)
}

func TestAckPersists(t *testing.T) {
	opts := testOptions(t)
	q, err := Open(opts)
	require.NoError(t, err)
	appendRecords(t, q, 0, 20)

	var pos Position
	for i := range 11 {
		var rec string
		rec, pos = next(t, q)
		require.Equal(t, string(record(i)), rec)
	}
	// Records 11 and 12 are returned but not acknowledged.
	next(t, q)
	next(t, q)
	require.NoError(t, q.Ack(pos))
	records, _ := q.Len()
	require.Equal(t, int64(9), records)
	require.Equal(t, 9.0, testutil.ToFloat64(opts.Metrics.Records.WithLabelValues(testUpstream)))
	// Record 10 is the second of segment 4: segments 1-3 are deleted.
	require.Equal(t, []uint64{4, 5, 6, 7}, segmentFiles(t, opts.Dir))
	require.NoError(t, q.Close())

	q, err = Open(opts)
	require.NoError(t, err)
	records, _ = q.Len()
	require.Equal(t, int64(9), records)
	got, last := drain(t, q)
	require.Equal(t, want(11, 20), got, "resumes after the last acknowledged record")

	require.NoError(t, q.Ack(last))
	records, _ = q.Len()
	require.Zero(t, records)
	require.NoError(t, q.Close())

	// Everything was acknowledged: reopening deletes the last segment too.
	q = openQueue(t, opts)
	records, bytes := q.Len()
	require.Zero(t, records)
	require.Zero(t, bytes)
	require.Empty(t, segmentFiles(t, opts.Dir))
	appendRecords(t, q, 20, 22)
	got, _ = drain(t, q)
	require.Equal(t, want(20, 22), got)
}

func TestAckDeletesReadSegments(t *testing.T) {
	opts := testOptions(t)
	q := openQueue(t, opts)
	appendRecords(t, q, 0, 7) // segments 1, 2 full; 3 being written

	_, pos := drain(t, q)
	require.NoError(t, q.Ack(pos))
	require.Equal(t, []uint64{3}, segmentFiles(t, opts.Dir), "the segment being written stays")
	records, bytes := q.Len()
	require.Zero(t, records)
	require.Equal(t, int64(segmentHeaderSize+frameBytes), bytes)

	// Acknowledging again, or an older position, does nothing.
	require.NoError(t, q.Ack(pos))
	require.NoError(t, q.Ack(Position{}))

	// A position past what Next returned is refused.
	err := q.Ack(Position{seq: pos.seq, off: pos.off + frameBytes, n: pos.n + 1})
	require.ErrorIs(t, err, ErrInvalidPosition)
}

func TestNextWaitsAndClose(t *testing.T) {
	opts := testOptions(t)
	q, err := Open(opts)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err = q.Next(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan string)
	go func() {
		rec, _, err := q.Next(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(rec)
	}()
	appendRecords(t, q, 0, 1)
	require.Equal(t, string(record(0)), <-got)

	errc := make(chan error)
	go func() {
		_, _, err := q.Next(context.Background())
		errc <- err
	}()
	require.NoError(t, q.Close())
	require.ErrorIs(t, <-errc, ErrClosed)
	require.NoError(t, q.Close(), "closing twice")
	require.ErrorIs(t, q.Append(record(1)), ErrClosed)
	require.ErrorIs(t, q.Ack(Position{seq: 1, off: 1}), ErrClosed)
}

func TestAppendTooLarge(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = 4096
	q := openQueue(t, opts)
	require.ErrorIs(t, q.Append(make([]byte, 5000)), ErrTooLarge)
	require.ErrorIs(t, q.Append(make([]byte, MaxRecordBytes+1)), ErrTooLarge)
	// A single record bigger than SegmentBytes gets a segment of its own.
	big := make([]byte, 1500)
	require.NoError(t, q.Append(record(0), big, record(1)))
	got, _ := drain(t, q)
	require.Equal(t, []string{string(record(0)), string(big), string(record(1))}, got)
}

func TestLock(t *testing.T) {
	opts := testOptions(t)
	q, err := Open(opts)
	require.NoError(t, err)

	start := time.Now()
	_, err = Open(opts)
	require.ErrorIs(t, err, ErrLocked)
	require.Contains(t, err.Error(), "held by another process (pid "+strconv.Itoa(os.Getpid())+")")
	require.Less(t, time.Since(start), time.Second, "fails fast")

	_, err = Lock(opts.Dir)
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, q.Close())
	q = openQueue(t, opts)
	require.NotNil(t, q)
}

func TestFull(t *testing.T) {
	for _, tc := range []struct {
		name        string
		policy      FullPolicy
		wantErr     bool
		wantRecords []string
		wantDropped float64
	}{
		{name: "block", policy: Block, wantErr: true, wantRecords: want(0, 6)},
		{name: "drop oldest", policy: DropOldest, wantRecords: want(3, 9), wantDropped: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.MaxBytes = 2 * testSegmentBytes // two segments of three records
			opts.FullPolicy = tc.policy
			q := openQueue(t, opts)
			appendRecords(t, q, 0, 6)

			var errs []error
			for i := 6; i < 9; i++ {
				if err := q.Append(record(i)); err != nil {
					errs = append(errs, err)
				}
			}
			m := opts.Metrics
			if tc.wantErr {
				require.Len(t, errs, 3)
				for _, err := range errs {
					require.ErrorIs(t, err, ErrFull)
				}
				require.Equal(t, 3.0, testutil.ToFloat64(m.Full.WithLabelValues(testUpstream, FullMaxBytes)))
			} else {
				require.Empty(t, errs)
			}
			_, bytes := q.Len()
			require.LessOrEqual(t, bytes, opts.MaxBytes)
			got, _ := drain(t, q)
			require.Equal(t, tc.wantRecords, got)
			require.Equal(t, tc.wantDropped, testutil.ToFloat64(m.DroppedRecords.WithLabelValues(testUpstream, DropOldestReason)))
			require.Equal(t, tc.wantDropped*frameBytes, testutil.ToFloat64(m.DroppedBytes.WithLabelValues(testUpstream, DropOldestReason)))
		})
	}
}

func TestFullBlockRecoversAfterAck(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = 2 * testSegmentBytes
	q := openQueue(t, opts)
	appendRecords(t, q, 0, 6)
	require.ErrorIs(t, q.Append(record(6)), ErrFull)

	// Acknowledging everything frees the finished segment and the one being
	// written, which the next Append replaces.
	_, pos := drain(t, q)
	require.NoError(t, q.Ack(pos))
	appendRecords(t, q, 6, 12)
	got, _ := drain(t, q)
	require.Equal(t, want(6, 12), got)
}

func TestDropOldestWhileReading(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = 2 * testSegmentBytes
	opts.FullPolicy = DropOldest
	q := openQueue(t, opts)
	appendRecords(t, q, 0, 6)
	rec, pos := next(t, q)
	require.Equal(t, string(record(0)), rec)

	appendRecords(t, q, 6, 7) // drops segment 1, which is being read
	require.NoError(t, q.Ack(pos), "acknowledging a dropped record is harmless")
	got, last := drain(t, q)
	require.Equal(t, want(3, 7), got)
	require.NoError(t, q.Ack(last))
	records, _ := q.Len()
	require.Zero(t, records)
	require.Equal(t, 3.0, testutil.ToFloat64(opts.Metrics.DroppedRecords.WithLabelValues(testUpstream, DropOldestReason)))
}

// failingFile fails writes with ENOSPC after writing half of them while
// full is set.
type failingFile struct {
	*os.File
	full *bool
	mu   *sync.Mutex
}

func (f failingFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	full := *f.full
	f.mu.Unlock()
	if !full {
		return f.File.WriteAt(p, off)
	}
	n, err := f.File.WriteAt(p[:len(p)/2], off)
	if err != nil {
		return n, err
	}
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func TestNoSpace(t *testing.T) {
	opts := testOptions(t)
	opts.Fsync = FsyncAlways
	var (
		mu   sync.Mutex
		full bool
	)
	setFull := func(v bool) { mu.Lock(); full = v; mu.Unlock() }
	opts.wrapFile = func(f *os.File) segmentFile { return failingFile{File: f, full: &full, mu: &mu} }
	q, err := Open(opts)
	require.NoError(t, err)

	appendRecords(t, q, 0, 5) // segment 2 holds records 3 and 4
	size := func() int64 {
		st, err := os.Stat(filepath.Join(opts.Dir, segmentName(2)))
		require.NoError(t, err)
		return st.Size()
	}
	before := size()

	setFull(true)
	err = q.Append(record(5))
	require.ErrorIs(t, err, ErrFull)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, before, size(), "the partial write is truncated")
	err = q.Append(record(5), record(6), record(7)) // would need a new segment
	require.ErrorIs(t, err, ErrFull)
	require.Equal(t, 2.0, testutil.ToFloat64(opts.Metrics.Full.WithLabelValues(testUpstream, FullNoSpace)))
	records, _ := q.Len()
	require.Equal(t, int64(5), records)

	setFull(false)
	appendRecords(t, q, 5, 8)
	require.NoError(t, q.Close())

	opts.wrapFile = nil
	opts.Metrics = NewMetrics(prometheus.NewPedanticRegistry())
	q = openQueue(t, opts)
	got, _ := drain(t, q)
	require.Equal(t, want(0, 8), got)
	for _, kind := range CorruptKinds {
		require.Zero(t, testutil.ToFloat64(opts.Metrics.CorruptBytes.WithLabelValues(testUpstream, kind)), kind)
	}
}

func TestConcurrentAppendAndRead(t *testing.T) {
	const n = 10_000
	opts := testOptions(t)
	opts.SegmentBytes = 16 << 10
	q := openQueue(t, opts)

	var wg sync.WaitGroup
	appendErr := make(chan error, 1)
	wg.Go(func() {
		for i := range n {
			if err := q.Append([]byte(strconv.Itoa(i))); err != nil {
				appendErr <- err
				return
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make([]int, 0, n)
	for len(got) < n {
		rec, pos, err := q.Next(ctx)
		require.NoError(t, err)
		i, err := strconv.Atoi(string(rec))
		require.NoError(t, err)
		got = append(got, i)
		if len(got)%7 == 0 || len(got) == n {
			require.NoError(t, q.Ack(pos))
		}
	}
	wg.Wait()
	select {
	case err := <-appendErr:
		require.NoError(t, err)
	default:
	}
	require.True(t, slices.IsSorted(got))
	require.Equal(t, n-1, got[n-1], "each record exactly once")
	records, _ := q.Len()
	require.Zero(t, records)
	require.LessOrEqual(t, len(segmentFiles(t, opts.Dir)), 1)
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	opts := testOptions(t)
	opts.Metrics = m
	q := openQueue(t, opts)
	appendRecords(t, q, 0, 2)

	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Positive(t, n)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Records.WithLabelValues(testUpstream)))
	require.Zero(t, testutil.ToFloat64(m.CorruptBytes.WithLabelValues(testUpstream, CorruptTornTail)))

	m.DeleteUpstream(testUpstream)
	n, err = testutil.GatherAndCount(reg, "gateway_queue_records")
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestOptionsValidation(t *testing.T) {
	_, err := Open(Options{})
	require.Error(t, err)
	_, err = Open(Options{Dir: t.TempDir(), MaxBytes: -1})
	require.Error(t, err)

	// A directory that cannot be created fails Open.
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = Open(Options{Dir: filepath.Join(file, "queue")})
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrLocked))
}

// TestCrash abandons a queue without closing it, as a process crash would
// (the kernel drops the lock), and reopens the directory.
func TestCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fsync  FsyncPolicy
		synced bool // the interval syncer ran before the crash
		want   []string
	}{
		{name: "always", fsync: FsyncAlways, want: want(5, 10)},
		// Record 4's segment 2 is the oldest left; the acknowledgement of
		// records 3 and 4 was not persisted: they are delivered again.
		{name: "interval before sync", fsync: FsyncInterval, want: want(3, 10)},
		{name: "interval after sync", fsync: FsyncInterval, synced: true, want: want(5, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.Fsync = tc.fsync
			opts.SyncInterval = time.Hour // the test runs the syncer itself
			q, err := Open(opts)
			require.NoError(t, err)
			appendRecords(t, q, 0, 10)
			var pos Position
			for range 5 {
				_, pos = next(t, q)
			}
			require.NoError(t, q.Ack(pos))
			next(t, q) // record 5: returned, not acknowledged
			if tc.synced {
				q.syncOnce()
			}

			require.NoError(t, q.release()) // crash
			q2 := openQueue(t, opts)
			got, _ := drain(t, q2)
			require.Equal(t, tc.want, got)
			t.Cleanup(func() { _ = q.Close() }) // stops its syncer
		})
	}
}

func TestSyncerPersistsPosition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions(t)
		opts.SyncInterval = time.Second
		q, err := Open(opts)
		require.NoError(t, err)
		defer func() { require.NoError(t, q.Close()) }()
		appendRecords(t, q, 0, 4)
		_, pos := next(t, q)
		require.NoError(t, q.Ack(pos))

		path := filepath.Join(opts.Dir, positionFileName)
		require.NoFileExists(t, path, "not before the interval")
		time.Sleep(opts.SyncInterval)
		synctest.Wait()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		seq, off, err := decodePosition(b)
		require.NoError(t, err)
		require.Equal(t, pos, Position{seq: seq, off: off, n: pos.n})
	})
}

// TestAppendAtPosition: AppendAt returns the position Next returns with the
// same record, across segment rolls, and positions order as records do.
func TestAppendAtPosition(t *testing.T) {
	q := openQueue(t, testOptions(t))
	var appended []Position
	for i := range 7 { // three segments
		recs := [][]byte{record(i)}
		if i == 3 {
			recs = [][]byte{record(30), record(31)}
		}
		pos, err := q.AppendAt(recs...)
		require.NoError(t, err)
		appended = append(appended, pos)
	}
	ctx := context.Background()
	var last Position
	for i := range appended {
		_, pos, err := q.Next(ctx)
		require.NoError(t, err)
		if i == 3 {
			require.True(t, last.Before(pos))
			require.False(t, pos.Equal(appended[i]), "the first record of a pair is not the returned position")
			last = pos
			_, pos, err = q.Next(ctx)
			require.NoError(t, err)
		}
		require.True(t, pos.Equal(appended[i]), "record %d: Next %v, AppendAt %v", i, pos, appended[i])
		require.True(t, last.Before(pos), "positions increase")
		require.False(t, pos.Before(last))
		require.False(t, pos.Before(pos))
		last = pos
	}
	pos, err := q.AppendAt()
	require.NoError(t, err)
	require.True(t, pos.Equal(Position{}))
}

// TestNextUnless: a record this process appended is not read when the
// caller holds it, at its AppendAt position, across segments and within
// one Append of several; what was not held, what was appended before
// Open, what a Rewind gives again and what is forgotten past maxAppended
// are read.
func TestNextUnless(t *testing.T) {
	opts := testOptions(t)
	q, err := Open(opts)
	require.NoError(t, err)
	var appended []Position
	for i := range 7 { // three segments; record 3 is the second of a pair
		recs := [][]byte{record(i)}
		if i == 3 {
			recs = [][]byte{record(30), record(i)}
		}
		pos, err := q.AppendAt(recs...)
		require.NoError(t, err)
		appended = append(appended, pos)
	}
	held := map[int]bool{1: true, 3: true, 4: true, 6: true}
	var asked []Position
	have := func(pos Position) bool {
		asked = append(asked, pos)
		for i, p := range appended {
			if p.Equal(pos) {
				return held[i]
			}
		}
		return false
	}
	ctx := context.Background()
	var got []string
	var last Position
	for range 8 {
		rec, pos, err := q.NextUnless(ctx, have)
		require.NoError(t, err)
		require.True(t, last.Before(pos), "positions increase")
		last = pos
		got = append(got, string(rec))
		if i := slices.IndexFunc(appended, pos.Equal); i >= 0 && held[i] {
			require.Nil(t, rec, "record %d is held: not read", i)
		}
	}
	require.Equal(t, []string{string(record(0)), "", string(record(2)), string(record(30)), "", "", string(record(5)), ""}, got)
	require.Len(t, asked, 8, "asked for every record appended")
	require.True(t, asked[7].Equal(appended[6]))
	require.Equal(t, float64(8*frameBytes), testutil.ToFloat64(opts.Metrics.ReadBytes.WithLabelValues(testUpstream)), "skipped records count as passed")

	// Rewind: nothing was acknowledged, so everything is read again, from
	// disk: the reader forgot what it passed.
	require.NoError(t, q.Rewind())
	asked = nil
	rewound, _ := drainUnless(t, q, have)
	require.Equal(t, []string{string(record(0)), string(record(1)), string(record(2)), string(record(30)), string(record(3)), string(record(4)), string(record(5)), string(record(6))}, rewound)
	require.Empty(t, asked)
	require.NoError(t, q.Ack(last))
	require.NoError(t, q.Close())

	// Reopened: what was appended before Open is read, what after is not.
	q = openQueue(t, opts)
	appended = appended[:0]
	for i := range 2 {
		pos, err := q.AppendAt(record(i))
		require.NoError(t, err)
		appended = append(appended, pos)
	}
	held = map[int]bool{0: true, 1: true}
	got, _ = drainUnless(t, q, have)
	require.Equal(t, []string{"", ""}, got)

	// Past maxAppended, the older are forgotten, and read.
	for i := range maxAppended + 10 {
		_, err := q.AppendAt(record(i))
		require.NoError(t, err)
	}
	got, _ = drainUnless(t, q, func(Position) bool { return true })
	require.Len(t, got, maxAppended+10)
	read := slices.IndexFunc(got, func(s string) bool { return s == "" })
	require.Positive(t, read, "the oldest are read")
	for i, s := range got {
		if i < read {
			require.Equal(t, string(record(i)), s)
		} else {
			require.Empty(t, s, "record %d, appended last: not read", i)
		}
	}
}

// drainUnless is drain with NextUnless and have.
func drainUnless(t testing.TB, q *Queue, have func(Position) bool) ([]string, Position) {
	t.Helper()
	var (
		got  []string
		last Position
	)
	q.readMu.Lock()
	defer q.readMu.Unlock()
	for {
		rec, pos, wait, err := q.tryNext(have)
		require.NoError(t, err)
		if wait != nil {
			return got, last
		}
		got = append(got, string(rec))
		last = pos
	}
}
