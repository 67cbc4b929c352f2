"""Sweeps: the packed launcher, packed runs (K seeds trained as one model), a sweep's progress lines and
its closing summary."""
