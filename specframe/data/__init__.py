"""Chat data: sources, rendering with the target's chat template, anchors, the LightningDataModule."""
