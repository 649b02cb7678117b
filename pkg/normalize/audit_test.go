package normalize

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// TestNamespaceAudit: the audit annotation is read; a bad value leaves
// auditing off with a warning naming the namespace and the annotation,
// also next to a malformed legacy annotation (which still isolates).
func TestNamespaceAudit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        model.AuditMode
		legacy      model.LegacyIsolation
		warnings    []string
	}{
		{"none", nil, 0, model.LegacyNone, nil},
		{"deny", map[string]string{model.AuditAnnotation: "deny"}, model.AuditDeny, model.LegacyNone, nil},
		{"both", map[string]string{model.AuditAnnotation: "deny,allow"}, model.AuditDeny | model.AuditAllow, model.LegacyNone, nil},
		{"bad", map[string]string{model.AuditAnnotation: "everything"}, 0, model.LegacyNone,
			[]string{"namespace shop", model.AuditAnnotation, `"everything"`, "stays off"}},
		{"control character", map[string]string{model.AuditAnnotation: "deny\n2026 forged line"}, 0, model.LegacyNone,
			[]string{`\n`}},
		{"both bad", map[string]string{model.AuditAnnotation: "x", model.LegacyAnnotation: "{"}, 0, model.LegacyMalformed,
			[]string{model.AuditAnnotation, model.LegacyAnnotation, "fail closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, warning := Namespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: tc.annotations}})
			if n.Audit != tc.want || n.LegacyIsolation != tc.legacy {
				t.Errorf("audit %v legacy %v; want %v, %v", n.Audit, n.LegacyIsolation, tc.want, tc.legacy)
			}
			if (warning != nil) != (len(tc.warnings) > 0) {
				t.Fatalf("warning %v", warning)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(warning.Error(), w) {
					t.Errorf("warning %q does not say %q", warning, w)
				}
			}
			if warning != nil && strings.ContainsAny(warning.Error(), "\n\r") {
				t.Errorf("warning %q holds a line break", warning)
			}
		})
	}
}
