package queue

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

var benchSizes = []int{1 << 10, 64 << 10}

func benchOptions(b *testing.B) Options {
	return Options{
		Dir:        b.TempDir(),
		MaxBytes:   256 << 20,
		FullPolicy: DropOldest, // keep the disk bounded however long it runs
		Fsync:      FsyncInterval,
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("record=%dKiB", size>>10), func(b *testing.B) {
			q, err := Open(benchOptions(b))
			require.NoError(b, err)
			defer q.Close()
			rec := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := q.Append(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadAck reads and acknowledges records one by one, as the
// forwarder does with batches. It fills the queue with b.N records first, so
// it uses b.N rather than b.Loop.
func BenchmarkReadAck(b *testing.B) {
	for _, size := range benchSizes {
		for _, ackEvery := range []int{1, 64} {
			b.Run(fmt.Sprintf("record=%dKiB/ack_every=%d", size>>10, ackEvery), func(b *testing.B) {
				opts := benchOptions(b)
				opts.MaxBytes = 8 << 30
				opts.FullPolicy = Block
				q, err := Open(opts)
				require.NoError(b, err)
				defer q.Close()
				rec := make([]byte, size)
				for range b.N {
					require.NoError(b, q.Append(rec))
				}
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					_, pos, err := q.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if (i+1)%ackEvery == 0 || i == b.N-1 {
						if err := q.Ack(pos); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
