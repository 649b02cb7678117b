package normalize

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/ovs-netpol/ovs-netpol/internal/printable"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// namespaceAudit reads a namespace's audit annotation. A value that is not
// understood leaves auditing off and is returned as an error naming the
// namespace and the field (the caller logs and counts it).
func namespaceAudit(ns *corev1.Namespace) (model.AuditMode, error) {
	value, present := ns.Annotations[model.AuditAnnotation]
	m, err := model.ParseAuditAnnotation(value, present)
	if err != nil {
		return 0, fmt.Errorf("namespace %s: metadata.annotations[%s]: %s", printable.String(ns.Name), model.AuditAnnotation, printable.String(err.Error()))
	}
	return m, nil
}
