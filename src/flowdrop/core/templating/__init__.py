"""The FlowTime template language: loading, parameters, validation, model generation."""
