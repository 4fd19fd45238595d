package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"

	"github.com/dustin/go-humanize"
)

// byteSize is a flag of a size in bytes: a plain integer, or one with a
// unit, decimal or binary, as github.com/dustin/go-humanize reads it
// ("256MiB", "1.5GB", "64k" are 268435456, 1500000000 and 64000 bytes).
// It prints as a plain integer, so --help and the README show bytes.
type byteSize struct{ v *int64 }

func (b byteSize) String() string {
	if b.v == nil {
		return "0"
	}
	return strconv.FormatInt(*b.v, 10)
}

func (b byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return fmt.Errorf("not a size in bytes (1048576, 1MiB, 1MB): %q", s)
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("size %q too large", s)
	}
	*b.v = int64(n)
	return nil
}

// bytesVar defines a byteSize flag with a default.
func bytesVar(fs *flag.FlagSet, v *int64, name string, def int64, usage string) {
	*v = def
	fs.Var(byteSize{v}, name, usage)
}
