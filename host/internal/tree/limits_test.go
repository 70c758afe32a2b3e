package tree

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// start_supervisor may nest supervisors config.MaxDepth levels deep, and
// no deeper: the refusal names the limit and persists nothing.
func TestStartSupervisorDepthLimit(t *testing.T) {
	tr, store := newFakeTree(t, sup("root"))
	ctx := context.Background()
	parent := ""
	for depth := 2; depth <= config.MaxDepth; depth++ {
		name := fmt.Sprintf("s%d", depth)
		if _, err := tr.StartSupervisor(ctx, control.SupervisorSpec{Name: name, Parent: parent}); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		parent = name
	}
	before := persistedNames(t, store)
	_, err := tr.StartSupervisor(ctx, control.SupervisorSpec{Name: "too-deep", Parent: parent})
	var cerr *control.Error
	if !errors.As(err, &cerr) || cerr.Code != control.CodeInvalidConfig ||
		!strings.Contains(cerr.Message, fmt.Sprintf("%d levels deep; supervisors may nest at most %d levels", config.MaxDepth+1, config.MaxDepth)) {
		t.Errorf("StartSupervisor at depth %d = %v", config.MaxDepth+1, err)
	}
	if after := persistedNames(t, store); len(after) != len(before) {
		t.Errorf("persisted %v, was %v", after, before)
	}
}
