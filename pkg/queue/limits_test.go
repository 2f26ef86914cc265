package queue

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRewind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		acked int // records acknowledged before the rewind
		read  int // records read before the rewind
	}{
		{name: "nothing acknowledged", acked: 0, read: 4},
		{name: "inside a segment", acked: 2, read: 5},
		{name: "at a segment end", acked: 3, read: 7},
		{name: "everything read acknowledged", acked: 6, read: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := openQueue(t, testOptions(t)) // 3 records per segment
			appendRecords(t, q, 0, 10)
			var pos Position
			for i := range tc.read {
				rec, p := next(t, q)
				require.Equal(t, string(record(i)), rec)
				if i < tc.acked {
					pos = p
				}
			}
			if tc.acked > 0 {
				require.NoError(t, q.Ack(pos))
			}
			require.NoError(t, q.Rewind())
			got, last := drain(t, q)
			require.Equal(t, want(tc.acked, 10), got)
			require.NoError(t, q.Ack(last))
			records, _ := q.Len()
			require.Zero(t, records)
		})
	}
}

func TestHasRoomAndSetLimits(t *testing.T) {
	opts := testOptions(t)
	opts.MaxBytes = segmentHeaderSize + 4*frameBytes
	q := openQueue(t, opts)
	require.True(t, q.HasRoom(1, recordSize))
	appendRecords(t, q, 0, 3)
	require.False(t, q.HasRoom(2, 2*recordSize))
	require.ErrorIs(t, q.Append(record(3), record(4)), ErrFull)

	q.SetLimits(1<<20, Block)
	require.True(t, q.HasRoom(2, 2*recordSize))
	appendRecords(t, q, 3, 5)

	q.SetLimits(segmentHeaderSize+4*frameBytes, DropOldest)
	require.True(t, q.HasRoom(2, 2*recordSize))
	appendRecords(t, q, 5, 7)
	got, _ := drain(t, q)
	require.Equal(t, want(5, 7), got, "the oldest were dropped to make room")
	require.NoError(t, q.Close())
	require.False(t, q.HasRoom(1, 1))
}
