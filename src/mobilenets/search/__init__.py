"""Architecture search after training: NetAdapt (widths for a latency target measured on the user's runtime)."""
