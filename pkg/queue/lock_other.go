//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package queue

import "errors"

// Lock is not implemented on this platform: the queue needs flock(2).
func Lock(dir string) (release func() error, err error) {
	return nil, errors.New("lock queue directory: flock is not supported on this platform")
}
