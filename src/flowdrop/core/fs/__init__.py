"""Storage: durable writes, the sandbox, locks, failpoints."""
