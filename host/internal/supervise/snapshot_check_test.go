package supervise

// Every test of the package runs with publish checking its incrementally
// updated snapshot against one built afresh: a change to a child's status
// that is not followed by touch panics the test that made it.
func init() { checkSnapshots = true }
