"""normlab's packed launcher as a Hydra plugin (Hydra instantiates launchers only from ``hydra_plugins``)."""
