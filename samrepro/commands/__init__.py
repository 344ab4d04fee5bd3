"""The commands: the samrepro CLI, the torchrun entry and JupyterLab."""
