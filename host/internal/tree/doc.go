// Package tree owns the host's supervision tree: every supervisor and
// worker name, where it came from (HCL, a control message, a hybrid
// worker), its place in the tree, what it should be doing, and the
// persisted record of what control messages asked for.
//
// One Tree holds it all, behind one mutex (Tree.mu) that guards its maps
// and is held only for short, non-blocking sections: never across a process
// start or stop, an RPC, a file write or a wait for another operation.
// Operations are serialised per name instead (nameLocks): a start that
// hangs for its whole start_timeout holds up only the operations on its
// own name, while starts, stops and status of every other worker go on.
//
// Control operations (StartWorker, StopWorker, RestartWorker,
// StartSupervisor, StopSupervisor), a reload (Reload: a pure plan, then its
// application) and hybrid workers (the ChildHost each incarnation gets) all
// go through the Tree. A hybrid's children hang under their owner in the
// supervise tree, in the supervise.Family of the owner's incarnation, and
// belong to it: control messages cannot start, replace, stop or restart
// them.
//
// The Tree knows nothing of transports, monitoring or the bus: the daemon
// gives it a Launch function that starts one worker incarnation (a plugin
// process), a Resolve function that validates a class and config against
// the catalog, the state store, and an event hook.
package tree
