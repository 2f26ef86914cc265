package queue

import "errors"

// lockFileName is the file in a locked directory that carries the flock and
// the pid of its holder.
const lockFileName = "lock"

// ErrLocked is returned (wrapped) by Lock and Open when another process, or
// another Queue in this process, holds the directory.
var ErrLocked = errors.New("directory is locked")
