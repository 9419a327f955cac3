"""Everything about being a daemon: spool, watcher, workers, lifecycle, config, CLI."""
