"""FlowTime engine and orchestration. Never imports watchdog, signals, python-daemon or the CLI."""
