// Package printable makes text read from input safe to write into our
// output, logs and messages.
package printable

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// String returns s as it is when it holds only printable characters,
// otherwise quoted with Go escapes: a line break (or any other control
// character, or invalid UTF-8) in a name could end a comment or a log line
// and start one of the input's choosing.
func String(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}
