"""nn.Modules only: no file I/O, no printing, no argv."""
