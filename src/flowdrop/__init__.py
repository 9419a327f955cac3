"""flowdrop: a filesystem-driven FlowTime run orchestrator."""

__version__ = "0.1.0"
