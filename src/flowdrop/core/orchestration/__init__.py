"""Run orchestration with TT-M-03.17 auto-capture: the library call the daemon makes."""
