"""The phone fleet simulator and the dataset replayer."""
