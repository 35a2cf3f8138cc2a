"""gridsim utility service: load forecasts, dynamic prices, demand response and an OpenADR 2.0b VTN."""
