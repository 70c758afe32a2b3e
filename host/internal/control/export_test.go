package control

// DeclareDeadLetterQueue is declareDeadLetterQueue, for tests with a queue
// of their own and a small bound.
var DeclareDeadLetterQueue = declareDeadLetterQueue
