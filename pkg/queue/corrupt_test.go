package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// writeFixture writes records 0-8 in segments 1-3, three each, and closes.
func writeFixture(t *testing.T, opts Options) {
	t.Helper()
	q, err := Open(opts)
	require.NoError(t, err)
	appendRecords(t, q, 0, 9)
	require.NoError(t, q.Close())
	require.Equal(t, []uint64{1, 2, 3}, segmentFiles(t, opts.Dir))
}

func segPath(opts Options, seq uint64) string { return filepath.Join(opts.Dir, segmentName(seq)) }

// recordOffset is where record i of the fixture starts in its segment.
func recordOffset(i int) int64 { return segmentHeaderSize + int64(i%3)*frameBytes }

func mutate(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, f(b), 0o644))
}

func TestCorruption(t *testing.T) {
	const foreign = "PK\x03\x04 not a segment at all"
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, opts Options)
		want    []string
		counts  map[string]float64 // by kind; absent kinds are 0
		// quarantined is the number of files expected in quarantine.
		quarantined int
	}{
		{
			name: "torn tail",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.Truncate(segPath(opts, 3), testSegmentBytes-5))
			},
			want:   want(0, 8),
			counts: map[string]float64{CorruptTornTail: frameBytes - 5},
		},
		{
			name: "torn frame header",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.Truncate(segPath(opts, 3), recordOffset(8)+7))
			},
			want:   want(0, 8),
			counts: map[string]float64{CorruptTornTail: 7},
		},
		{
			name: "flipped payload byte in a middle record",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 2), func(b []byte) []byte {
					b[recordOffset(4)+frameHeaderSizeV1+10] ^= 0x40
					return b
				})
			},
			want:   append(want(0, 4), want(5, 9)...),
			counts: map[string]float64{CorruptRecord: frameBytes},
		},
		{
			name: "flipped length byte in a middle record",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 2), func(b []byte) []byte {
					b[recordOffset(4)+1] ^= 0x01
					return b
				})
			},
			want:   append(want(0, 4), want(5, 9)...),
			counts: map[string]float64{CorruptRecord: frameBytes},
		},
		{
			name: "zeroed block in a middle segment",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 2), func(b []byte) []byte {
					clear(b[recordOffset(3)+20 : recordOffset(4)+3])
					return b
				})
			},
			want:   append(want(0, 3), want(5, 9)...),
			counts: map[string]float64{CorruptRecord: 2 * frameBytes},
		},
		{
			name: "corrupt last record",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 3), func(b []byte) []byte {
					b[recordOffset(8)+frameHeaderSizeV1] ^= 0xff
					return b
				})
			},
			want:   want(0, 8),
			counts: map[string]float64{CorruptRecord: frameBytes},
		},
		{
			name: "garbage appended",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 3), func(b []byte) []byte {
					return append(b, bytes.Repeat([]byte("garbage!"), 10)...)
				})
			},
			want:   want(0, 9),
			counts: map[string]float64{CorruptTornTail: 80},
		},
		{
			name: "foreign file with a segment name",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.WriteFile(segPath(opts, 7), []byte(foreign), 0o644))
			},
			want:        want(0, 9),
			counts:      map[string]float64{CorruptQuarantined: float64(len(foreign))},
			quarantined: 1,
		},
		{
			name: "short header",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.WriteFile(segPath(opts, 4), []byte(segmentMagic[:5]), 0o644))
			},
			want:        want(0, 9),
			counts:      map[string]float64{CorruptQuarantined: 5},
			quarantined: 1,
		},
		{
			name: "newer format version",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 2), func(b []byte) []byte {
					binary.LittleEndian.PutUint16(b[8:], 99)
					return b
				})
			},
			want:        append(want(0, 3), want(6, 9)...),
			counts:      map[string]float64{CorruptQuarantined: testSegmentBytes},
			quarantined: 1,
		},
		{
			name: "header checksum mismatch",
			corrupt: func(t *testing.T, opts Options) {
				mutate(t, segPath(opts, 1), func(b []byte) []byte {
					b[10] = 1 // flags, not covered by a new CRC
					return b
				})
			},
			want:        want(3, 9),
			counts:      map[string]float64{CorruptQuarantined: testSegmentBytes},
			quarantined: 1,
		},
		{
			name: "zero-length segment",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.WriteFile(segPath(opts, 4), nil, 0o644))
			},
			want: want(0, 9),
		},
		{
			name: "corrupt position file",
			corrupt: func(t *testing.T, opts Options) {
				// Acknowledge records 0-3, then damage the position: reading
				// restarts at the oldest segment left, segment 2.
				q, err := Open(opts)
				require.NoError(t, err)
				for range 3 {
					next(t, q)
				}
				_, pos := next(t, q)
				require.NoError(t, q.Ack(pos))
				require.NoError(t, q.Close())
				mutate(t, filepath.Join(opts.Dir, positionFileName), func(b []byte) []byte {
					b[15] ^= 0x01
					return b
				})
			},
			want:   want(3, 9),
			counts: map[string]float64{CorruptPosition: positionSize},
		},
		{
			name: "position past the end of its segment",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, writePosition(opts.Dir, 2, 1<<20, true))
			},
			want: want(6, 9),
		},
		{
			name: "unknown files are left alone",
			corrupt: func(t *testing.T, opts Options) {
				require.NoError(t, os.WriteFile(filepath.Join(opts.Dir, "notes.txt"), []byte("hi"), 0o644))
				require.NoError(t, os.WriteFile(filepath.Join(opts.Dir, "1.seg"), []byte("hi"), 0o644))
			},
			want: want(0, 9),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.QuarantineDir = filepath.Join(filepath.Dir(opts.Dir), "quarantine")
			writeFixture(t, opts)
			tc.corrupt(t, opts)

			var logs bytes.Buffer
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			opts.Metrics = NewMetrics(prometheus.NewPedanticRegistry())
			q := openQueue(t, opts)
			records, _ := q.Len()
			require.Equal(t, int64(len(tc.want)), records)
			got, last := drain(t, q)
			require.Equal(t, tc.want, got)
			for _, kind := range CorruptKinds {
				require.Equal(t, tc.counts[kind], testutil.ToFloat64(opts.Metrics.CorruptBytes.WithLabelValues(testUpstream, kind)), kind)
			}
			require.Equal(t, float64(tc.quarantined), testutil.ToFloat64(opts.Metrics.QuarantinedFiles.WithLabelValues(testUpstream)))
			entries, _ := os.ReadDir(opts.QuarantineDir)
			require.Len(t, entries, tc.quarantined)
			if len(tc.counts) > 0 {
				require.Contains(t, logs.String(), "level=WARN")
			}

			// The queue works on: acknowledge, append, reopen, and nothing is
			// counted twice.
			if last != (Position{}) {
				require.NoError(t, q.Ack(last))
			}
			appendRecords(t, q, 100, 102)
			require.NoError(t, q.Close())
			q = openQueue(t, opts)
			got, _ = drain(t, q)
			require.Equal(t, want(100, 102), got)
			for _, kind := range CorruptKinds {
				require.Equal(t, tc.counts[kind], testutil.ToFloat64(opts.Metrics.CorruptBytes.WithLabelValues(testUpstream, kind)), kind)
			}
		})
	}
}

func TestUnknownFilesKept(t *testing.T) {
	opts := testOptions(t)
	writeFixture(t, opts)
	other := filepath.Join(opts.Dir, "notes.txt")
	require.NoError(t, os.WriteFile(other, []byte("hi"), 0o644))
	q := openQueue(t, opts)
	got, _ := drain(t, q)
	require.Equal(t, want(0, 9), got)
	require.FileExists(t, other)
}

// A torn tail in a segment read by a running queue is truncated at the next
// Open and the records before it are delivered once.
func TestTornTailTruncated(t *testing.T) {
	opts := testOptions(t)
	writeFixture(t, opts)
	require.NoError(t, os.Truncate(segPath(opts, 3), testSegmentBytes-1))
	q := openQueue(t, opts)
	st, err := os.Stat(segPath(opts, 3))
	require.NoError(t, err)
	require.Equal(t, recordOffset(8), st.Size(), "truncated to the last valid frame")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = q.Next(ctx)
	require.ErrorIs(t, err, context.Canceled)
}
