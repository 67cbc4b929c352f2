"""Training one network: the experiment built from its config, the LightningModule, callbacks,
checkpointing, loggers, process settings and speed."""
