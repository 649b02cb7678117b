package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
)

// document is one YAML document or JSON value of a file.
type document struct {
	index int    // 1-based position in the file
	line  int    // line of the file the document starts on, 1-based
	data  []byte // YAML or JSON text
	json  bool
}

// splitYAML splits a YAML stream at "---" lines. Numbering follows YAML: a
// first chunk with nothing but blank lines and comments before the first
// "---" is not a document; every later chunk is, even an empty one (empty
// documents are skipped by the caller, but keep their number so that
// "document 3" is what a person counting the separators expects).
func splitYAML(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []document
	var cur bytes.Buffer
	start := 1
	sawSeparator := false
	flush := func() {
		if !sawSeparator && len(docs) == 0 && blank(cur.Bytes()) {
			return
		}
		docs = append(docs, document{index: len(docs) + 1, line: start, data: append([]byte(nil), cur.Bytes()...)})
	}
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if isSeparator(line) {
			flush()
			sawSeparator = true
			cur.Reset()
			start = lineNo
			// Anything after "---" on the same line belongs to the new
			// document ("--- # comment", "--- {a: 1}"); keep columns.
			cur.WriteString("   ")
			cur.Write(line[3:])
			continue
		}
		cur.Write(line)
	}
	if sawSeparator || !blank(cur.Bytes()) {
		flush()
	}
	return docs
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	return len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\n' || line[3] == '\r'
}

// blank reports whether YAML text holds nothing but whitespace and comments.
func blank(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}

// splitJSON splits a stream of JSON values (one object, or several one after
// the other as `kubectl get -o json` pipelines produce).
func splitJSON(data []byte) ([]document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for {
		var raw json.RawMessage
		offset := int(dec.InputOffset())
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("line %d: invalid JSON: %v", lineOf(data, int(se.Offset)), err)
			}
			return nil, fmt.Errorf("document %d: invalid JSON: %v", len(docs)+1, err)
		}
		// InputOffset was before any whitespace preceding the value.
		start := offset + len(data[offset:]) - len(bytes.TrimLeft(data[offset:], " \t\r\n"))
		docs = append(docs, document{index: len(docs) + 1, line: lineOf(data, start), data: raw, json: true})
	}
}

func lineOf(data []byte, offset int) int {
	if offset > len(data) {
		offset = len(data)
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

var yamlLineRE = regexp.MustCompile(`\bline (\d+)\b`)

// fileLines rewrites the "line N" of a YAML parser error, which counts from
// the start of the document, into a line of the file.
func fileLines(err error, docStart int) string {
	return yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, convErr := strconv.Atoi(m[len("line "):])
		if convErr != nil {
			return m
		}
		return "line " + strconv.Itoa(n+docStart-1)
	})
}
