package compiler

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// priorityRow is one priority as priorities.go declares it and
// flows/README.md's "Priorities" table lists it.
type priorityRow struct{ tables, name, value, why string }

// declaredPriorities reads priorities.go: per constant, its group's tables
// (the group comment before the colon), name, literal value and line
// comment.
func declaredPriorities(t *testing.T) []priorityRow {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "priorities.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var rows []priorityRow
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		if g.Doc == nil {
			t.Fatalf("a const group of priorities.go has no comment naming its tables")
		}
		tables, _, ok := strings.Cut(g.Doc.Text(), ":")
		if !ok {
			t.Fatalf("const group comment %q: no colon after its tables", g.Doc.Text())
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if len(v.Names) != 1 || len(v.Values) != 1 || v.Comment == nil {
				t.Fatalf("priority %v: want one name, one literal value and a line comment", v.Names)
			}
			lit, ok := v.Values[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.INT {
				t.Fatalf("priority %s: its value is not a literal", v.Names[0].Name)
			}
			rows = append(rows, priorityRow{strings.Join(strings.Fields(tables), " "), v.Names[0].Name, lit.Value, strings.TrimSpace(v.Comment.Text())})
		}
	}
	return rows
}

// documentedPriorities reads the rows of flows/README.md's "Priorities"
// table: | tables | constant | priority | why |.
func documentedPriorities(t *testing.T) []priorityRow {
	t.Helper()
	b, err := os.ReadFile("../../flows/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Priorities\n")
	if !ok {
		t.Fatal(`flows/README.md has no "## Priorities" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []priorityRow
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| table") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 4 {
			t.Fatalf("README priority row %q: want 4 cells", line)
		}
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		rows = append(rows, priorityRow{cells[0], cells[1], cells[2], cells[3]})
	}
	return rows
}

// TestPrioritiesDocumented: flows/README.md's priority table is
// priorities.go, row for row, and every priority is a literal.
func TestPrioritiesDocumented(t *testing.T) {
	code, doc := declaredPriorities(t), documentedPriorities(t)
	for i := range max(len(code), len(doc)) {
		var c, d priorityRow
		if i < len(code) {
			c = code[i]
		}
		if i < len(doc) {
			d = doc[i]
		}
		if c != d {
			t.Errorf("row %d:\npriorities.go %+v\nREADME        %+v", i+1, c, d)
		}
	}
	if len(code) < 30 {
		t.Errorf("only %d priorities read from priorities.go", len(code))
	}
}
