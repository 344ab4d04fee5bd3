"""The machine: devices and dtypes, the memory and time model, placement and the plan."""
