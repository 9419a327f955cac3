"""Telemetry bundles: capture, series CSVs, manifest, bundle publish and reading, replay."""
