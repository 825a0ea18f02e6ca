"""Smart meters: manufacturer certificates and signed 15-minute readings (pure)."""
