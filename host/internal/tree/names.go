package tree

// HasWorker reports whether the tree has a worker of that name, also one
// not started yet (Worker, which reports its status, leaves such a worker
// out until its supervisor has it).
func (t *Tree) HasWorker(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[name]
	return n != nil && n.kind == kindWorker
}
