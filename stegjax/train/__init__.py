"""Trainer, sharding rules, checkpoints and metric writers shared by every experiment."""
